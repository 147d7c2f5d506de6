package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// RunChildIfRequested runs the sandbox child, and never returns, when
// argv[1] is the hidden child argument (or the builtin stage, which the
// child executes for a builtin builder, see builtin_linux.go, or the
// spawner, which clones children for a Runner, see spawner_linux.go);
// otherwise it returns at once. It must be the first statement of main
// in cmd/storefs and of TestMain in every package whose tests run
// builds: Run re-executes our own binary (/proc/self/exe) as the child,
// before any flag parsing or test setup could get in the way.
func RunChildIfRequested() {
	if len(os.Args) == 3 && os.Args[1] == builtinArg {
		os.Exit(builtinMain(os.Args[2]))
	}
	if len(os.Args) == 2 && os.Args[1] == spawnerArg {
		os.Exit(spawnerMain())
	}
	if len(os.Args) != 2 || os.Args[1] != childArg {
		return
	}
	// The credentials and capabilities are changed for this thread only,
	// by raw syscalls; the exec keeps just the thread that calls it. So
	// every step must run on this one thread.
	runtime.LockOSThread()
	os.Exit(childMain())
}

// childMain reads the configuration and runs the child; it returns only
// after a failure, which it reported to the parent.
func childMain() (code int) {
	defer func() {
		if v := recover(); v != nil {
			reportFailure(&SetupError{Step: "sandbox child", Err: fmt.Errorf("panic: %v\n%s", v, debug.Stack())})
			code = childFailedExit
		}
	}()
	var cfg childConfig
	cr := &configReader{}
	if err := json.NewDecoder(cr).Decode(&cfg); err != nil {
		reportFailure(&SetupError{Step: "read config", Err: err})
		return childFailedExit
	}
	rootFD := -1
	for _, fd := range cr.fds {
		if rootFD < 0 && cfg.Sandbox != nil && cfg.Sandbox.RootFS == rootTmpfs {
			rootFD = fd
		} else {
			unix.Close(fd)
		}
	}
	reportFailure(runChild(&cfg, rootFD))
	return childFailedExit
}

// runChild sets up the build environment and executes the builder; it
// returns only on failure, with a *SetupError naming the step. The order
// matters:
//   - every mount (steps 1 and 2) needs the host's paths, so it comes
//     before pivot_root (step 3) hides them;
//   - the mounts and the hostname need our capabilities in the new
//     namespaces, which the switch to the build user (step 6) drops;
//   - the working directory is set (step 5) while we may still enter any
//     directory of the build user's;
//   - seccomp (step 7) comes last, as close to the exec as possible,
//     since it filters our own syscalls too.
//
// In Disabled mode (cfg.Sandbox == nil) steps 1 to 4 are skipped. For a
// builtin builder, step 8 executes the builtin stage instead (see
// execBuiltin). rootFD is the root tmpfs's mount that came with cfg, or
// -1.
func runChild(cfg *childConfig, rootFD int) error {
	if sb := cfg.Sandbox; sb != nil {
		// 1. Mounts: the root, the store, the build directory, the
		// inputs (read-only) and sandbox-paths.
		root, err := mountSandbox(sb, rootFD)
		if err != nil {
			return &SetupError{Step: "mounts", Err: err}
		}
		// 2. Device nodes, devpts, /dev/shm and a fresh /proc.
		if err := mountDevAndProc(sb, root); err != nil {
			return &SetupError{Step: "/dev and /proc", Err: err}
		}
		// 3. The root becomes "/"; the host's tree is detached.
		if err := pivotRoot(root); err != nil {
			return &SetupError{Step: "pivot_root", Err: err}
		}
		// 4. Fixed host and domain names; the loopback interface.
		if err := setHostname(sb.PrivateNetwork); err != nil {
			return &SetupError{Step: "hostname", Err: err}
		}
	}
	// 5. The build directory becomes the working directory.
	if err := enterBuildDir(cfg.Dir); err != nil {
		return &SetupError{Step: "chdir", Err: err}
	}
	// 6. The build user, without capabilities or supplementary groups,
	// and the process attributes Nix gives builders.
	if err := dropToBuildUser(cfg); err != nil {
		return &SetupError{Step: "drop to build user", Err: err}
	}
	if err := setProcessAttributes(cfg); err != nil {
		return &SetupError{Step: "process attributes", Err: err}
	}
	// 7. no_new_privs and the seccomp filter, on every thread.
	if err := loadSeccomp(); err != nil {
		return &SetupError{Step: "seccomp", Err: err}
	}
	// 8. The builder replaces us (as pid 1 of its namespace, in a sandbox).
	if cfg.Builtin != nil {
		return &SetupError{Step: "exec builtin", Err: execBuiltin(cfg)}
	}
	return &SetupError{Step: "exec builder", Err: execBuilder(cfg)}
}

// setHostname sets the names Nix 2.8 gives builds, and brings up the
// loopback interface of a private network namespace (it starts down).
func setHostname(privateNetwork bool) error {
	if err := unix.Sethostname([]byte("localhost")); err != nil {
		return os.NewSyscallError("sethostname", err)
	}
	// "(none)" is the kernel's default; the new UTS namespace copied the
	// host's.
	if err := unix.Setdomainname([]byte("(none)")); err != nil {
		return os.NewSyscallError("setdomainname", err)
	}
	if !privateNetwork {
		return nil
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	ifr.SetUint16(unix.IFF_UP | unix.IFF_LOOPBACK | unix.IFF_RUNNING)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bringing up lo: %w", os.NewSyscallError("ioctl SIOCSIFFLAGS", err))
	}
	return nil
}

// enterBuildDir makes dir the working directory of the builder.
func enterBuildDir(dir string) error {
	if err := unix.Chdir(dir); err != nil {
		return &os.PathError{Op: "chdir", Path: dir, Err: err}
	}
	return nil
}

// dropToBuildUser switches to the build user.
//
// In a sandbox these are uid 1000 and gid 100 of the user namespace. Our
// own uid there is unmapped (it shows as the overflow uid), so setuid does
// not clear our capabilities the way leaving uid 0 would, and our ambient
// capabilities would even survive the exec: they are dropped explicitly.
// The supplementary groups cannot be changed in a namespace whose setgroups
// is "deny"; the parent cleared them before cloning us.
//
// In Disabled mode, as root, these are the host ids of the uid pool slot;
// the supplementary groups are cleared here.
func dropToBuildUser(cfg *childConfig) error {
	if !cfg.SetUser {
		return nil
	}
	// Raw syscalls change only this thread, the one that will exec, and
	// the exec ends every other thread (which run nothing but the Go
	// runtime meanwhile). syscall.Setuid and friends would change every
	// thread, stopping the world to do it: that costs more than the rest
	// of the child together on a busy machine.
	if cfg.Sandbox == nil {
		if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0); e != 0 {
			return os.NewSyscallError("setgroups", e)
		}
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGID, uintptr(cfg.GID), 0, 0); e != 0 {
		return fmt.Errorf("setgid %d: %w", cfg.GID, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETUID, uintptr(cfg.UID), 0, 0); e != 0 {
		return fmt.Errorf("setuid %d: %w", cfg.UID, e)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return os.NewSyscallError("prctl PR_CAP_AMBIENT_CLEAR_ALL", err)
	}
	// Effective, permitted and inheritable all empty (the inheritable set
	// would survive the exec).
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return os.NewSyscallError("capset", err)
	}
	return nil
}

// Personality flags (linux/personality.h).
const (
	perLinux32      = 0x0008
	uname26         = 0x0020000
	addrNoRandomize = 0x0040000
)

// setProcessAttributes sets what Nix sets for every builder: umask 022, no
// address space randomisation (for reproducibility), the 32-bit
// personality for 32-bit systems, a 2.6 kernel's uname when asked, no core
// dumps. It also arranges for the
// build to die with its parent (the Runner's spawner, or the Runner): the
// parent-death signal, which setuid cleared.
func setProcessAttributes(cfg *childConfig) error {
	syscall.Umask(0o022)

	if cfg.Linux32 {
		if _, _, e := unix.RawSyscall(unix.SYS_PERSONALITY, perLinux32, 0, 0); e != 0 {
			return os.NewSyscallError("personality PER_LINUX32", e)
		}
	}
	cur, _, e := unix.RawSyscall(unix.SYS_PERSONALITY, 0xffffffff, 0, 0)
	if e != 0 {
		return os.NewSyscallError("personality", e)
	}
	if cfg.Uname26 {
		cur |= uname26
	}
	if _, _, e := unix.RawSyscall(unix.SYS_PERSONALITY, cur|addrNoRandomize, 0, 0); e != 0 {
		return os.NewSyscallError("personality ADDR_NO_RANDOMIZE", e)
	}

	var core unix.Rlimit
	if err := unix.Prlimit(0, unix.RLIMIT_CORE, nil, &core); err != nil {
		return os.NewSyscallError("getrlimit RLIMIT_CORE", err)
	}
	core.Cur = 0 // the hard limit stays: raising it may need privileges
	if err := unix.Prlimit(0, unix.RLIMIT_CORE, &core, nil); err != nil {
		return os.NewSyscallError("setrlimit RLIMIT_CORE", err)
	}

	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return os.NewSyscallError("prctl PR_SET_PDEATHSIG", err)
	}
	// If the Runner died before that, its end of the config socket is
	// closed: a peek then sees EOF instead of "no data yet". (A spawner
	// that died alone is the Runner's business: see protocol.go.)
	var b [1]byte
	n, _, err := unix.Recvfrom(configFD, b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	if n == 0 && err == nil {
		return errors.New("the parent process died")
	}
	return nil
}

// execBuilder executes the builder. It returns only if execve failed.
func execBuilder(cfg *childConfig) error {
	if err := readyToExec(); err != nil {
		return err
	}
	err := syscall.Exec(cfg.Builder, cfg.Argv, cfg.Env)
	return &os.PathError{Op: "execve", Path: cfg.Builder, Err: err}
}

// readyToExec prepares the exec: every descriptor above stderr becomes
// close-on-exec, so that nothing but stdin, stdout and stderr reaches the
// builder, configFD included, whose closing tells the parent that the exec
// succeeded; then the parent hears that we are ready.
func readyToExec() error {
	if err := unix.CloseRange(configFD, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		if err := closeOnExecSlow(); err != nil {
			return err
		}
	}
	if err := writeAll(configFD, []byte(readyFrame)); err != nil {
		return fmt.Errorf("reporting readiness: %w", err)
	}
	return nil
}

// closeOnExecSlow marks every descriptor above stderr close-on-exec, for
// kernels without close_range (before 5.11).
func closeOnExecSlow() error {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, e := range fds {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		unix.CloseOnExec(fd) // fails only for the directory's own fd, now closed
	}
	return nil
}

// reportFailure sends err to the parent as an error frame. If that fails,
// stderr (the build log) is the last resort.
func reportFailure(err error) {
	step := "sandbox child"
	var se *SetupError
	if errors.As(err, &se) {
		step, err = se.Step, se.Err
	}
	if writeAll(configFD, encodeFailure(step, err)) != nil {
		writeAll(2, []byte("sandbox: "+step+": "+err.Error()+"\n"))
	}
}

// configReader reads the configuration from configFD, and keeps the
// descriptors that come with it (SCM_RIGHTS, see protocol.go), close-on-exec.
type configReader struct {
	fds []int
	oob []byte
}

func (r *configReader) Read(p []byte) (int, error) {
	if r.oob == nil {
		r.oob = make([]byte, unix.CmsgSpace(4*4))
	}
	for {
		n, oobn, _, _, err := unix.Recvmsg(configFD, p, r.oob, unix.MSG_CMSG_CLOEXEC)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, os.NewSyscallError("recvmsg", err)
		}
		if oobn > 0 {
			fds, err := parseRights(r.oob[:oobn])
			r.fds = append(r.fds, fds...)
			if err != nil {
				return 0, err
			}
		}
		if n == 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

// fdReader reads a raw descriptor without an *os.File, whose finalizer
// could close it behind our back.
type fdReader int

func (r fdReader) Read(p []byte) (int, error) {
	for {
		n, err := syscall.Read(int(r), p)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return 0, os.NewSyscallError("read", err)
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// writeAll writes all of p to fd.
func writeAll(fd int, p []byte) error {
	for len(p) > 0 {
		n, err := syscall.Write(fd, p)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("write", err)
		}
		p = p[n:]
	}
	return nil
}
