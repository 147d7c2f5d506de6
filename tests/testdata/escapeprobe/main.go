// Command escapeprobe is the builder of the sandbox escape battery
// (tests/escape_test.go): `escapeprobe ATTEMPT` tries one way out of the
// sandbox, one step at a time, and prints a line per step:
//
//	STEP <step>: <outcome>[: <detail>]
//
// where outcome is "blocked" (the step failed; the detail names the
// errno), "contained" (it succeeded, but only inside the sandbox or a
// namespace of its own; the test checks the host) or "escaped" (it reached
// the host). Then it prints "DONE" and creates $out, unless the attempt
// makes $out itself, and exits 0, so that the build succeeds and its log
// holds the report.
//
// It is static (built with CGO_ENABLED=0) and needs nothing from the
// store but busybox ($BUSYBOX) for the steps that need a fresh process in
// new namespaces, which a Go program cannot unshare into. The environment
// names what to aim at on the host: $HOST_PID and $HOST_PID_1000 (processes
// of root and of uid 1000), $PORT (a TCP listener on the host's loopback),
// $ABSTRACT (an abstract unix socket), $STATE (the state directory),
// $HOSTFILE (a file), $SECRET (a valid store path that is not an input),
// $INPUTS (the input paths) and $MARKER, a word every file the probe
// creates is named with.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// openAtStart is how many descriptors were open when main began.
var openAtStart []int

func main() {
	// Before the runtime opens anything of its own.
	for fd := 0; fd < 1024; fd++ {
		if _, _, e := unix.RawSyscall(unix.SYS_FCNTL, uintptr(fd), unix.F_GETFD, 0); e == 0 {
			openAtStart = append(openAtStart, fd)
		}
	}
	if len(os.Args) != 2 {
		fmt.Println("usage: escapeprobe ATTEMPT")
		os.Exit(2)
	}
	fn, ok := attempts[os.Args[1]]
	if !ok {
		fmt.Println("unknown attempt", os.Args[1])
		os.Exit(2)
	}
	makesOut := fn()
	fmt.Println("DONE")
	if !makesOut {
		if err := os.WriteFile(os.Getenv("out"), []byte("probed "+os.Args[1]+"\n"), 0o644); err != nil {
			fmt.Println("writing $out:", err)
			os.Exit(1)
		}
	}
}

// attempts are the attempts by name; each returns whether it made $out.
var attempts = map[string]func() bool{
	"read-etc-shadow":        readEtcShadow,
	"read-root-home":         readRootHome,
	"read-host-file":         readHostFile,
	"read-backing-store":     readBackingStore,
	"read-database":          readDatabase,
	"write-host":             writeHost,
	"network":                network,
	"see-host-processes":     seeHostProcesses,
	"signal-host-processes":  signalHostProcesses,
	"ptrace-host-process":    ptraceHostProcess,
	"mount":                  mount,
	"device-nodes":           deviceNodes,
	"kernel-modules":         kernelModules,
	"set-clock":              setClock,
	"hostname":               hostname,
	"setuid-setgid-files":    setuidFiles,
	"xattrs":                 xattrs,
	"io-uring":               ioUring,
	"fill-dev-shm":           fillDevShm,
	"proc-self-root":         procSelfRoot,
	"inherited-fds":          inheritedFDs,
	"linger-after-build":     linger,
	"output-symlink-to-host": outputSymlinkToHost,
	"output-links":           outputLinks,
	"output-special-files":   outputSpecialFiles,
	"kernel-interfaces":      kernelInterfaces,
	"shared-directories":     sharedDirectories,
}

func step(name, outcome, detail string) {
	if detail != "" {
		outcome += ": " + detail
	}
	fmt.Printf("STEP %s: %s\n", name, outcome)
}

// expectFail reports a step that must fail: blocked with its errno, or
// escaped with what it achieved.
func expectFail(name string, err error, achieved string) {
	if err != nil {
		step(name, "blocked", errName(err))
		return
	}
	step(name, "escaped", achieved)
}

// expectErrno reports a step that must fail with one of want: blocked
// then, and otherwise escaped (it succeeded) or unexpected (it failed for
// another reason, which may hide the one that matters, as ENOENT for a
// missing mount point would hide EPERM).
func expectErrno(name string, err error, achieved string, want ...syscall.Errno) {
	if err == nil {
		step(name, "escaped", achieved)
		return
	}
	for _, w := range want {
		if errors.Is(err, w) {
			step(name, "blocked", errName(err))
			return
		}
	}
	step(name, "unexpected", errName(err))
}

// contained reports a step that succeeded inside the sandbox, or fails.
func contained(name string, err error, detail string) {
	if err != nil {
		step(name, "blocked", errName(err))
		return
	}
	step(name, "contained", detail)
}

func errName(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		if n := unix.ErrnoName(errno); n != "" {
			return n
		}
		return errno.Error()
	}
	return err.Error()
}

func env(k string) string { return os.Getenv(k) }

func marker() string { return env("MARKER") }

func envInt(k string) int {
	n, err := strconv.Atoi(env(k))
	if err != nil {
		fmt.Printf("bad %s: %v\n", k, err)
		os.Exit(1)
	}
	return n
}

// busybox runs a shell script with busybox and reports each line it
// prints as "SUB|<step>|<ok|fail>|<detail>" as a step of its own, with
// outcome ifOK when it succeeded.
func busybox(script, ifOK string) {
	cmd := exec.Command(env("BUSYBOX"), "sh", "-c", script)
	cmd.Env = os.Environ()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	for _, line := range strings.Split(out.String(), "\n") {
		f := strings.SplitN(line, "|", 4)
		if len(f) < 3 || f[0] != "SUB" {
			continue
		}
		detail := ""
		if len(f) == 4 {
			detail = f[3]
		}
		if f[2] == "ok" {
			step(f[1], ifOK, detail)
		} else {
			step(f[1], "blocked", detail)
		}
	}
	if err != nil {
		fmt.Printf("busybox script: %v\n%s", err, out.String())
	}
}

// sub is a shell function for busybox scripts: `sub NAME CMD…` runs CMD
// and prints a SUB line with its error output.
const sub = `sub() { n=$1; shift; if e=$("$@" 2>&1); then echo "SUB|$n|ok|$e"; else echo "SUB|$n|fail|$(echo $e | tr '\n' ' ')"; fi; }
`

func readEtcShadow() bool {
	_, err := os.ReadFile("/etc/shadow")
	expectFail("read /etc/shadow", err, "read the host's password hashes")
	_, err = os.ReadFile("/etc/gshadow")
	expectFail("read /etc/gshadow", err, "read the host's group passwords")
	entries, err := os.ReadDir("/etc")
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if err == nil && strings.Join(names, " ") != "group hosts passwd" {
		step("list /etc", "escaped", strings.Join(names, " "))
	} else {
		step("list /etc", "blocked", "only the sandbox's "+strings.Join(names, " "))
	}
	return false
}

func readRootHome() bool {
	_, err := os.ReadDir("/root")
	expectFail("list /root", err, "listed root's home")
	_, err = os.ReadFile("/root/.ssh/authorized_keys")
	expectFail("read /root/.ssh/authorized_keys", err, "read root's keys")
	_, err = os.ReadDir("/home")
	expectFail("list /home", err, "listed /home")
	return false
}

func readHostFile() bool {
	f := env("HOSTFILE")
	_, err := os.ReadFile(f)
	expectFail("read the host file by its path", err, "read "+f)
	_, err = os.ReadFile("/proc/1/root" + f)
	expectFail("read it through /proc/1/root", err, "read "+f)
	_, err = os.ReadFile("/proc/self/cwd/../../../../.." + f)
	expectFail("read it through /proc/self/cwd/..", err, "read "+f)
	return false
}

func readBackingStore() bool {
	state, secret := env("STATE"), env("SECRET")
	_, err := os.ReadDir(state + "/store")
	expectFail("list the backing store", err, "listed "+state+"/store")
	_, err = os.ReadFile(state + "/store/" + filepath.Base(secret))
	expectFail("read a valid path in the backing store", err, "read "+secret)
	_, err = os.ReadFile(secret)
	expectFail("read a valid path that is not an input", err, "read "+secret)
	entries, err := os.ReadDir("/nix/store")
	if err != nil {
		step("list /nix/store", "blocked", errName(err))
		return false
	}
	allowed := map[string]bool{filepath.Base(env("out")): true}
	for _, in := range strings.Fields(env("INPUTS")) {
		allowed[filepath.Base(in)] = true
	}
	var extra []string
	for _, e := range entries {
		if !allowed[e.Name()] {
			extra = append(extra, e.Name())
		}
	}
	if len(extra) > 0 {
		step("list /nix/store", "escaped", "sees "+strings.Join(extra, " "))
	} else {
		step("list /nix/store", "blocked", fmt.Sprintf("only the %d inputs", len(entries)))
	}
	return false
}

func readDatabase() bool {
	state := env("STATE")
	_, err := os.ReadFile(state + "/db/storefs.db")
	expectFail("read the database", err, "read "+state+"/db/storefs.db")
	_, err = os.OpenFile(state+"/db/storefs.db", os.O_RDWR, 0)
	expectFail("open the database for writing", err, "opened the database")
	var found []string
	filepath.WalkDir("/", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if p == "/proc" || p == "/dev" {
			return fs.SkipDir
		}
		if strings.HasSuffix(p, ".db") || d.Name() == "storefs.db" {
			found = append(found, p)
		}
		return nil
	})
	if len(found) > 0 {
		step("search the sandbox for a database", "escaped", strings.Join(found, " "))
	} else {
		step("search the sandbox for a database", "blocked", "none")
	}
	return false
}

func writeHost() bool {
	m, state, secret := marker(), env("STATE"), env("SECRET")
	expectFail("write into the backing store", os.WriteFile(state+"/store/"+m, []byte("x"), 0o644), "wrote into "+state)
	expectFail("write the host file", os.WriteFile(env("HOSTFILE"), []byte(m), 0o644), "overwrote "+env("HOSTFILE"))
	contained("write /tmp", os.WriteFile("/tmp/"+m, []byte("x"), 0o644), "in the sandbox's /tmp")
	contained("write /build", os.WriteFile("/build/"+m, []byte("x"), 0o644), "in the build directory")
	contained("write /dev/shm", os.WriteFile("/dev/shm/"+m, []byte("x"), 0o644), "in the sandbox's /dev/shm")
	contained("make a store path that is not an output", os.Mkdir("/nix/store/00000000000000000000000000000000-"+m, 0o755), "in the sandbox's store directory")
	err := os.Mkdir(secret, 0o755)
	if err == nil {
		err = os.WriteFile(secret+"/"+m, []byte("replaced"), 0o644)
	}
	contained("make a valid path that is not an input", err, "in the sandbox's store directory")
	bb := inputNamed("busybox")
	expectErrno("write into an input", os.WriteFile(bb+"/"+m, []byte("x"), 0o644), "wrote into "+bb, unix.EROFS)
	expectFail("rename an input", os.Rename(bb, "/nix/store/00000000000000000000000000000000-"+m+"-renamed"), "renamed "+bb)
	expectFail("remove an input's file", os.Remove(bb+"/bin/busybox"), "removed busybox")
	return false
}

func inputNamed(name string) string {
	for _, in := range strings.Fields(env("INPUTS")) {
		if strings.HasSuffix(in, "-"+name) {
			return in
		}
	}
	fmt.Println("no input named", name)
	os.Exit(1)
	return ""
}

func network() bool {
	ifs, err := net.Interfaces()
	var names []string
	for _, i := range ifs {
		names = append(names, i.Name)
	}
	if err == nil && strings.Join(names, " ") == "lo" {
		step("list network interfaces", "blocked", "only lo")
	} else {
		step("list network interfaces", "escaped", fmt.Sprintf("%v %v", names, err))
	}
	dial := func(network, addr string) error {
		c, err := net.DialTimeout(network, addr, 3*time.Second)
		if err == nil {
			if network == "udp" {
				_, err = c.Write([]byte("x"))
			}
			c.Close()
		}
		return err
	}
	expectFail("connect to a listener on the host's loopback", dial("tcp", "127.0.0.1:"+env("PORT")), "connected")
	expectFail("connect to the host's abstract unix socket", dial("unix", "@"+env("ABSTRACT")), "connected")
	expectFail("connect to an address on the internet", dial("tcp", "1.1.1.1:443"), "connected")
	expectFail("send to a DNS server", dial("udp", "8.8.8.8:53"), "sent")
	if _, err = net.LookupHost("example.com"); err != nil {
		step("resolve a name", "blocked", "no resolver to reach")
	} else {
		step("resolve a name", "escaped", "resolved example.com")
	}
	return false
}

func seeHostProcesses() bool {
	for _, k := range []string{"HOST_PID", "HOST_PID_1000"} {
		pid := env(k)
		_, err := os.Stat("/proc/" + pid)
		expectFail("see /proc/$"+k, err, "sees pid "+pid)
		_, err = os.ReadFile("/proc/" + pid + "/environ")
		expectFail("read /proc/$"+k+"/environ", err, "read its environment")
	}
	entries, _ := os.ReadDir("/proc")
	var pids []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, e.Name())
		}
	}
	if len(pids) == 1 && pids[0] == "1" {
		step("list processes", "blocked", "only pid 1, the builder")
	} else {
		step("list processes", "escaped", strings.Join(pids, " "))
	}
	return false
}

func signalHostProcesses() bool {
	for _, k := range []string{"HOST_PID", "HOST_PID_1000"} {
		pid := envInt(k)
		expectErrno("signal 0 to $"+k, unix.Kill(pid, 0), "the process exists", unix.ESRCH)
		expectErrno("SIGKILL to $"+k, unix.Kill(pid, unix.SIGKILL), "killed it", unix.ESRCH)
		_, err := unix.PidfdOpen(pid, 0)
		expectErrno("pidfd_open $"+k, err, "got a pidfd", unix.ESRCH)
	}
	expectErrno("SIGKILL to every process (kill -1)", unix.Kill(-1, unix.SIGKILL), "signalled processes", unix.ESRCH)
	return false
}

func ptraceHostProcess() bool {
	pid := envInt("HOST_PID_1000")
	_, _, e := unix.RawSyscall6(unix.SYS_PTRACE, unix.PTRACE_ATTACH, uintptr(pid), 0, 0, 0, 0)
	expectErrno("PTRACE_ATTACH to $HOST_PID_1000", errOrNil(e), "attached", unix.ESRCH)
	_, _, e = unix.RawSyscall6(unix.SYS_PTRACE, unix.PTRACE_SEIZE, uintptr(envInt("HOST_PID")), 0, 0, 0, 0)
	expectErrno("PTRACE_SEIZE of $HOST_PID", errOrNil(e), "seized", unix.ESRCH)
	buf := make([]byte, 8)
	_, err := unix.ProcessVMReadv(pid, []unix.Iovec{{Base: &buf[0], Len: 8}}, []unix.RemoteIovec{{Base: 0x400000, Len: 8}}, 0)
	expectErrno("process_vm_readv of $HOST_PID_1000", err, "read its memory", unix.ESRCH)
	_, err = os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	expectFail("open /proc/$HOST_PID_1000/mem", err, "opened its memory")
	return false
}

func errOrNil(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func mount() bool {
	os.Mkdir("/build/m", 0o755)
	expectErrno("mount a tmpfs", unix.Mount("none", "/build/m", "tmpfs", 0, ""), "mounted", unix.EPERM)
	expectErrno("bind-mount /", unix.Mount("/", "/build/m", "", unix.MS_BIND, ""), "bound /", unix.EPERM)
	bb := inputNamed("busybox")
	expectErrno("remount an input read-write", unix.Mount("", bb, "", unix.MS_REMOUNT|unix.MS_BIND, ""), "made it writable", unix.EPERM)
	expectErrno("unmount an input", unix.Unmount(bb, unix.MNT_DETACH), "unmounted it", unix.EPERM)
	expectErrno("mount a procfs", unix.Mount("proc", "/build/m", "proc", 0, ""), "mounted", unix.EPERM)
	busybox(sub+`
sub "create a nested user namespace" unshare -Urm true
unshare -Urm sh -c '`+strings.ReplaceAll(sub, "'", `'"'"'`)+`
sub "mount a tmpfs in a nested user namespace" mount -t tmpfs none /build/m
sub "remount an input read-write in a nested user namespace" mount -o remount,bind,rw `+bb+`
sub "unmount an input in a nested user namespace" umount `+bb+`
sub "write into an input in a nested user namespace" touch `+bb+`/`+marker()+`
'`, "contained")
	return false
}

func deviceNodes() bool {
	expectErrno("mknod a character device (/dev/mem)", unix.Mknod("/build/mem", unix.S_IFCHR|0o666, int(unix.Mkdev(1, 1))), "made /dev/mem", unix.EPERM)
	expectErrno("mknod a block device (sda)", unix.Mknod("/build/sda", unix.S_IFBLK|0o666, int(unix.Mkdev(8, 0))), "made a disk node", unix.EPERM)
	busybox(sub+`sub "mknod in a nested user namespace" unshare -Ur mknod /build/null2 c 1 3`, "escaped")
	return false
}

// kernelModules tries to load and unload modules. A kernel built without
// module support answers ENOSYS before any permission check.
func kernelModules() bool {
	image := make([]byte, 64)
	expectErrno("init_module", unix.InitModule(image, ""), "loaded a module", unix.EPERM, unix.ENOSYS)
	f, err := os.Open("/dev/null")
	if err == nil {
		expectErrno("finit_module", unix.FinitModule(int(f.Fd()), "", 0), "loaded a module", unix.EPERM, unix.ENOSYS)
		f.Close()
	}
	expectErrno("delete_module", unix.DeleteModule("loop", unix.O_NONBLOCK), "unloaded a module", unix.EPERM, unix.ENOSYS)
	busybox(sub+`head -c 4096 /dev/zero > /build/x.ko
sub "insmod in a nested user namespace" unshare -Ur insmod /build/x.ko`, "escaped")
	return false
}

func setClock() bool {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_REALTIME, &ts)
	// Setting the time it is would change nothing if it were allowed.
	expectErrno("clock_settime", unix.ClockSettime(unix.CLOCK_REALTIME, &ts), "set the clock", unix.EPERM)
	tv := unix.NsecToTimeval(time.Now().UnixNano())
	expectErrno("settimeofday", unix.Settimeofday(&tv), "set the clock", unix.EPERM)
	var tx unix.Timex
	if _, err := unix.Adjtimex(&tx); err == nil {
		tx.Modes = unix.ADJ_FREQUENCY // the frequency it has
		_, err = unix.Adjtimex(&tx)
		expectErrno("adjtimex", err, "adjusted the clock", unix.EPERM)
	}
	// busybox date says it cannot set the date, but exits 0.
	busybox(sub+`sub "date -s in a nested user namespace" unshare -Ur sh -c '! date -s @$(date +%s) 2>&1 | grep "can.t set date"'`, "escaped")
	return false
}

func hostname() bool {
	name := []byte("escaped-" + marker())
	expectErrno("sethostname", unix.Sethostname(name), "renamed the host", unix.EPERM)
	expectErrno("setdomainname", unix.Setdomainname(name), "renamed the domain", unix.EPERM)
	expectFail("write /proc/sys/kernel/hostname", os.WriteFile("/proc/sys/kernel/hostname", name, 0), "renamed the host")
	busybox(sub+`sub "hostname in a nested user and UTS namespace" unshare -Uru hostname escaped-`+marker(), "contained")
	if h, _ := os.Hostname(); h != "localhost" {
		step("the sandbox's own hostname", "escaped", h)
	}
	return false
}

func setuidFiles() bool {
	f := "/build/f"
	os.WriteFile(f, []byte("#!/bin/sh\n"), 0o755)
	expectErrno("chmod 4755", unix.Chmod(f, 0o4755), "made a setuid file", unix.EPERM)
	expectErrno("chmod 2755", unix.Chmod(f, 0o2755), "made a setgid file", unix.EPERM)
	expectErrno("fchmodat2 4755", fchmodat2(f, 0o4755), "made a setuid file", unix.EPERM)
	busybox(sub+`sub "chmod u+s in a nested user namespace" unshare -Ur chmod u+s /build/f`, "escaped")
	out := env("out")
	os.Mkdir(out, 0o755)
	// creat(2) with a setuid mode is not filtered (Nix's filter is the
	// same): the bit is dropped when the output is canonicalised.
	fd, err := unix.Open(out+"/suid", unix.O_CREAT|unix.O_WRONLY|unix.O_EXCL, 0o4755)
	mode := modeOf(out + "/suid")
	if err == nil {
		unix.Close(fd)
	}
	contained("creat a file with mode 4755 in $out", err, "mode "+mode+" until the output is canonicalised")
	err = unix.Mkdir(out+"/sgid", 0o2775)
	contained("mkdir with mode 2775 in $out", err, "mode "+modeOf(out+"/sgid")+" until the output is canonicalised")
	return true
}

func modeOf(p string) string {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return errName(err)
	}
	return fmt.Sprintf("%o", st.Mode&0o7777)
}

func fchmodat2(f string, mode uint32) error {
	const sysFchmodat2 = 452 // ^uintptr(99) is AT_FDCWD (-100)
	p, _ := unix.BytePtrFromString(f)
	_, _, e := unix.Syscall6(sysFchmodat2, ^uintptr(99), uintptr(unsafe.Pointer(p)), uintptr(mode), 0, 0, 0)
	return errOrNil(e)
}

func xattrs() bool {
	out := env("out")
	os.Mkdir(out, 0o755)
	f := out + "/f"
	os.WriteFile(f, []byte("x"), 0o644)
	expectErrno("setxattr user.*", unix.Setxattr(f, "user.escape", []byte("x"), 0), "set an attribute", unix.ENOTSUP)
	expectErrno("setxattr security.capability", unix.Setxattr(f, "security.capability", make([]byte, 20), 0), "set file capabilities", unix.ENOTSUP)
	expectErrno("setxattr system.posix_acl_access", unix.Setxattr(f, "system.posix_acl_access", []byte{2, 0, 0, 0}, 0), "set an ACL", unix.ENOTSUP)
	expectErrno("lsetxattr", unix.Lsetxattr(f, "user.escape", []byte("x"), 0), "set an attribute", unix.ENOTSUP)
	file, err := os.Open(f)
	if err == nil {
		expectErrno("fsetxattr", unix.Fsetxattr(int(file.Fd()), "user.escape", []byte("x"), 0), "set an attribute", unix.ENOTSUP)
		file.Close()
	}
	return true
}

func ioUring() bool {
	const sysIoUringSetup = 425
	var params [120]byte
	_, _, e := unix.Syscall(sysIoUringSetup, 8, uintptr(unsafe.Pointer(&params[0])), 0)
	expectErrno("io_uring_setup", errOrNil(e), "made a ring that seccomp does not see", unix.ENOSYS)
	return false
}

func fillDevShm() bool {
	f, err := os.Create("/dev/shm/" + marker())
	if err == nil {
		buf := make([]byte, 1<<20)
		for i := 0; i < 64 && err == nil; i++ {
			_, err = f.Write(buf)
		}
		f.Close()
	}
	var st unix.Statfs_t
	unix.Statfs("/dev/shm", &st)
	contained("write 64 MiB to /dev/shm", err, fmt.Sprintf("a tmpfs of the sandbox's own (type %#x)", st.Type))
	return false
}

func procSelfRoot() bool {
	if l, err := os.Readlink("/proc/self/root"); err != nil || l != "/" {
		step("readlink /proc/self/root", "escaped", fmt.Sprintf("%q %v", l, err))
	} else {
		step("readlink /proc/self/root", "blocked", "the sandbox's root")
	}
	var root, up unix.Stat_t
	unix.Stat("/", &root)
	unix.Stat("/proc/self/root/../../../..", &up)
	if root.Ino != up.Ino || root.Dev != up.Dev {
		step("climb above /proc/self/root", "escaped", "reached another directory")
	} else {
		step("climb above /proc/self/root", "blocked", "it is the sandbox's root")
	}
	_, err := os.ReadFile("/proc/1/root/../../../etc/shadow")
	expectFail("read /proc/1/root/../../../etc/shadow", err, "read the host's shadow")
	_, err = os.ReadFile("/proc/self/root/../etc/shadow")
	expectFail("read /proc/self/root/../etc/shadow", err, "read the host's shadow")
	expectErrno("chroot", unix.Chroot("/build"), "changed root", unix.EPERM)
	// open_by_handle_at is how containers were escaped ("shocker").
	h := unix.NewFileHandle(1, make([]byte, 8))
	_, err = unix.OpenByHandleAt(unix.AT_FDCWD, h, unix.O_RDONLY)
	expectErrno("open_by_handle_at", err, "opened a file by handle", unix.EPERM)
	return false
}

func inheritedFDs() bool {
	var extra []string
	for _, fd := range openAtStart {
		if fd > 2 {
			l, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
			extra = append(extra, fmt.Sprintf("%d->%s", fd, l))
		}
	}
	if len(extra) > 0 {
		step("look for inherited descriptors", "escaped", strings.Join(extra, " "))
	} else {
		step("look for inherited descriptors", "blocked", "only 0, 1 and 2")
	}
	for fd := 0; fd <= 2; fd++ {
		l, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
		_, err := unix.Openat(fd, "..", unix.O_RDONLY|unix.O_DIRECTORY, 0)
		expectFail(fmt.Sprintf("openat(%d (%s), \"..\")", fd, l), err, "opened a directory through it")
	}
	return false
}

func linger() bool {
	bb := env("BUSYBOX")
	started := 0
	for _, args := range [][]string{
		{"setsid", "sleep", "1000"},
		{"sh", "-c", "(sleep 1001 &) &"},
		{"nohup", "sleep", "1002"},
		{"unshare", "-Urpf", "sleep", "1003"},
		{"start-stop-daemon", "-S", "-b", "-x", bb, "--", "sleep", "1004"},
	} {
		cmd := exec.Command(bb, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err == nil {
			started++
			cmd.Process.Release()
		}
	}
	time.Sleep(200 * time.Millisecond)
	entries, _ := os.ReadDir("/proc")
	var pids []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err == nil && e.Name() != "1" {
			pids = append(pids, e.Name())
		}
	}
	sort.Strings(pids)
	contained("start daemons and exit", nil, fmt.Sprintf("%d started, %d processes besides the builder", started, len(pids)))
	return false
}

func outputSymlinkToHost() bool {
	err := os.Symlink("/etc/shadow", env("out"))
	contained("make $out a symlink to /etc/shadow", err, "a symlink in the output, followed by nobody")
	return true
}

func outputLinks() bool {
	out := env("out")
	os.Mkdir(out, 0o755)
	contained("symlink $out/shadow to /etc/shadow", os.Symlink("/etc/shadow", out+"/shadow"), "")
	contained("symlink $out/up to ../../..", os.Symlink("../../..", out+"/up"), "")
	expectErrno("hard-link an input's file into $out", os.Link(inputNamed("busybox")+"/bin/busybox", out+"/busybox"), "linked an input", unix.EXDEV)
	expectErrno("hard-link the sandbox's /etc/passwd into $out", os.Link("/etc/passwd", out+"/passwd"), "linked a file of the chroot", unix.EXDEV)
	expectErrno("hard-link a file of /build into $out", linkFromBuild(out), "linked across the build directory", unix.EXDEV)
	return true
}

func linkFromBuild(out string) error {
	os.WriteFile("/build/l", []byte("x"), 0o644)
	return os.Link("/build/l", out+"/l")
}

func outputSpecialFiles() bool {
	out := env("out")
	os.Mkdir(out, 0o755)
	contained("mkfifo in $out", unix.Mkfifo(out+"/fifo", 0o644), "rejected when the output is registered")
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err == nil {
		err = unix.Bind(fd, &unix.SockaddrUnix{Name: out + "/socket"})
	}
	contained("bind a unix socket in $out", err, "rejected when the output is registered")
	return true
}

func kernelInterfaces() bool {
	expectFail("write /proc/sysrq-trigger", os.WriteFile("/proc/sysrq-trigger", []byte("h"), 0), "sent a sysrq")
	expectFail("write /proc/sys/vm/drop_caches", os.WriteFile("/proc/sys/vm/drop_caches", []byte("1"), 0), "dropped the host's caches")
	_, err := os.ReadDir("/sys")
	expectFail("list /sys", err, "listed /sys")
	for _, dev := range []string{"/dev/mem", "/dev/sda", "/dev/vda", "/dev/fuse", "/dev/loop-control"} {
		_, err := os.Stat(dev)
		expectFail("open "+dev, err, dev+" exists")
	}
	// An invalid magic: EPERM without CAP_SYS_BOOT, EINVAL with it.
	_, _, e := unix.RawSyscall6(unix.SYS_REBOOT, 0, 0, 0, 0, 0, 0)
	expectErrno("reboot", errOrNil(e), "was allowed to reboot", unix.EPERM)
	return false
}

// sharedDirectories checks the directories the builder shares with
// whatever else runs in the sandbox (nested namespaces, its own children
// under other ids): /tmp and the store directory keep their sticky bit,
// as in Nix, so that no one removes or replaces what another made there.
func sharedDirectories() bool {
	for _, d := range []struct{ path, want string }{{"/tmp", "1777"}, {"/nix/store", "1775"}} {
		if got := modeOf(d.path); got != d.want {
			step("find "+d.path+" without its sticky bit", "escaped", "mode "+got)
		} else {
			step("find "+d.path+" without its sticky bit", "blocked", "mode "+got)
		}
	}
	return false
}
