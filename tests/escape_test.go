package tests

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"
)

// escapeAttempt is one row of the sandbox escape battery: a build whose
// builder, tests/testdata/escapeprobe, tries one way out.
type escapeAttempt struct {
	name string
	// contained are the steps that may succeed because what they reach
	// is the sandbox's own (its /tmp, a nested namespace); the host
	// checks then show that nothing of the host changed.
	contained []string
	// rejected is set when the output must be refused at registration.
	rejected string
	// host checks what the attempt aims at on the host, beyond the
	// checks made after every attempt, and says what it found.
	host func(t *testing.T, b *battery, out string) string
}

// battery holds what the attempts aim at on the host.
type battery struct {
	in        *instance
	marker    string
	busybox   string // the busybox input
	probe     string // the probe input
	secret    string // a valid path that is not an input
	hostFile  string
	victims   []*exec.Cmd // sleeping processes of root and of uid 1000
	conns     chan string // connections the host's listeners accepted
	listeners []net.Listener
}

// hostState is what of the host the attempts must not change.
type hostState struct {
	store    []string // entries of the backing store
	tmp      []string // entries of its temporary area
	shadow   string   // stat of /etc/shadow, ctime included
	hostname string
	modules  string
	mounts   []string // mount points outside the temporary directory
	shmUsed  int64
	wall     time.Time
	mono     time.Duration
}

var escapeEpoch = time.Now()

func (b *battery) snapshot(t *testing.T) hostState {
	t.Helper()
	var s hostState
	s.store = dirNames(t, filepath.Join(b.in.state, "store"))
	s.tmp = dirNames(t, filepath.Join(b.in.state, "store", ".tmp"))
	var st unix.Stat_t
	if err := unix.Stat("/etc/shadow", &st); err == nil {
		s.shadow = fmt.Sprintf("mode %o uid %d gid %d size %d mtime %d.%d ctime %d.%d", st.Mode, st.Uid, st.Gid, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec)
	}
	s.hostname, _ = os.Hostname()
	mods, _ := os.ReadFile("/proc/modules")
	s.modules = string(mods)
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	tmp := filepath.Clean(os.TempDir())
	for _, line := range strings.Split(string(mi), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] != tmp && !strings.HasPrefix(f[4], tmp+"/") {
			s.mounts = append(s.mounts, f[4])
		}
	}
	sort.Strings(s.mounts)
	var sfs unix.Statfs_t
	if unix.Statfs("/dev/shm", &sfs) == nil {
		s.shmUsed = int64(sfs.Blocks-sfs.Bfree) * sfs.Bsize
	}
	// Round(0) strips the monotonic reading, which Sub would use.
	s.wall, s.mono = time.Now().Round(0), time.Since(escapeEpoch)
	return s
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// compare returns how the host changed from before to after, given the
// output base name the build may add to the backing store ("" if none).
func (b *battery) compare(before, after hostState, out string) []string {
	var changes []string
	want := append([]string(nil), before.store...)
	if out != "" {
		want = append(want, out)
	}
	sort.Strings(want)
	if strings.Join(after.store, " ") != strings.Join(want, " ") {
		changes = append(changes, fmt.Sprintf("backing store has %v, want %v", after.store, want))
	}
	if len(after.tmp) != 0 {
		changes = append(changes, fmt.Sprintf("temporary area holds %v", after.tmp))
	}
	if after.shadow != before.shadow {
		changes = append(changes, fmt.Sprintf("/etc/shadow changed: %s -> %s", before.shadow, after.shadow))
	}
	if after.hostname != before.hostname {
		changes = append(changes, fmt.Sprintf("hostname changed to %q", after.hostname))
	}
	if after.modules != before.modules {
		changes = append(changes, "the loaded kernel modules changed")
	}
	if strings.Join(after.mounts, " ") != strings.Join(before.mounts, " ") {
		changes = append(changes, fmt.Sprintf("host mounts changed: %v -> %v", before.mounts, after.mounts))
	}
	if d := after.shmUsed - before.shmUsed; d > 8<<20 || d < -(8<<20) {
		changes = append(changes, fmt.Sprintf("/dev/shm use changed by %d bytes", d))
	}
	if skew := after.wall.Sub(before.wall) - (after.mono - before.mono); skew > 2*time.Second || skew < -2*time.Second {
		changes = append(changes, fmt.Sprintf("the wall clock jumped by %v", skew))
	}
	for _, v := range b.victims {
		if !alive(v.Process.Pid) {
			changes = append(changes, fmt.Sprintf("host process %d (uid %d) is gone", v.Process.Pid, v.SysProcAttr.Credential.Uid))
		}
	}
	select {
	case c := <-b.conns:
		changes = append(changes, "a host listener accepted a connection: "+c)
	default:
	}
	changes = append(changes, b.markerFiles()...)
	changes = append(changes, b.lingering()...)
	return changes
}

// alive reports whether pid runs and is not a zombie.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// markerFiles finds files named with the marker where a builder could
// have left them on the host.
func (b *battery) markerFiles() []string {
	var found []string
	dirs := []string{"/", "/tmp", "/var/tmp", "/dev/shm", "/root", "/etc", "/nix", "/nix/store"}
	if !contains(dirs, os.TempDir()) {
		dirs = append(dirs, os.TempDir())
	}
	for _, dir := range dirs {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.Contains(e.Name(), b.marker) {
				found = append(found, "left "+filepath.Join(dir, e.Name()))
			}
		}
	}
	filepath.WalkDir(b.in.state, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), b.marker) {
			found = append(found, "left "+p)
		}
		return nil
	})
	return found
}

// lingering finds processes that carry the marker in their environment:
// the probe's children. It waits a little for them to go.
func (b *battery) lingering() []string {
	want := []byte("MARKER=" + b.marker)
	deadline := time.Now().Add(5 * time.Second)
	for {
		var found []string
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			if _, err := strconv.Atoi(e.Name()); err != nil {
				continue
			}
			environ, err := os.ReadFile("/proc/" + e.Name() + "/environ")
			if err == nil && bytes.Contains(environ, want) && alive(mustAtoi(e.Name())) {
				cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
				found = append(found, fmt.Sprintf("process %s (%s) outlived the build", e.Name(), bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
			}
		}
		if len(found) == 0 || time.Now().After(deadline) {
			return found
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mustAtoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// newBattery sets up the host side: the store with busybox, the probe and
// a secret path, victims, listeners and a host file.
func newBattery(t *testing.T) *battery {
	t.Helper()
	in := newInstance(t)
	nonce := make([]byte, 6)
	rand.Read(nonce)
	b := &battery{in: in, marker: "storefsescape" + hex.EncodeToString(nonce), conns: make(chan string, 16)}
	b.busybox = strings.TrimSpace(in.ok("add", busyboxDir(t)))

	probeDir := filepath.Join(t.TempDir(), "escapeprobe")
	build := exec.Command("go", "build", "-o", filepath.Join(probeDir, "bin", "probe"), "./testdata/escapeprobe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the probe: %v\n%s", err, out)
	}
	b.probe = strings.TrimSpace(in.ok("add", probeDir))

	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("a valid path no build names as an input\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b.secret = strings.TrimSpace(in.ok("add", secretFile))

	hostDir := t.TempDir()
	os.Chmod(hostDir, 0o755)
	b.hostFile = filepath.Join(hostDir, "host-file")
	if err := os.WriteFile(b.hostFile, []byte("host data\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, uid := range []uint32{0, 1000} {
		cmd := exec.Command("/bin/busybox", "sleep", "600")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting a victim as uid %d: %v", uid, err)
		}
		b.victims = append(b.victims, cmd)
	}
	t.Cleanup(func() {
		for _, v := range b.victims {
			v.Process.Kill()
			v.Wait()
		}
	})

	var wg sync.WaitGroup
	for _, addr := range [][2]string{{"tcp", "127.0.0.1:0"}, {"unix", "@" + b.marker}} {
		ln, err := net.Listen(addr[0], addr[1])
		if err != nil {
			t.Fatal(err)
		}
		b.listeners = append(b.listeners, ln)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				b.conns <- ln.Addr().String()
				c.Close()
			}
		}()
	}
	t.Cleanup(func() {
		for _, ln := range b.listeners {
			ln.Close()
		}
		wg.Wait()
	})
	return b
}

// addAttempt adds the derivation of an attempt and returns its .drv path
// and output path.
func (b *battery) addAttempt(t *testing.T, name string) (string, string) {
	t.Helper()
	env := map[string]string{
		"MARKER":        b.marker,
		"HOST_PID":      strconv.Itoa(b.victims[0].Process.Pid),
		"HOST_PID_1000": strconv.Itoa(b.victims[1].Process.Pid),
		"PORT":          strconv.Itoa(b.listeners[0].Addr().(*net.TCPAddr).Port),
		"ABSTRACT":      b.marker,
		"STATE":         b.in.state,
		"HOSTFILE":      b.hostFile,
		"SECRET":        b.secret,
		"INPUTS":        b.busybox + " " + b.probe,
		"BUSYBOX":       b.busybox + "/bin/busybox",
	}
	data, _ := json.Marshal(map[string]any{
		"name":      "escape-" + name,
		"system":    "x86_64-linux",
		"builder":   b.probe + "/bin/probe",
		"args":      []string{name},
		"inputSrcs": []string{b.busybox, b.probe},
		"inputDrvs": map[string]any{},
		"outputs":   map[string]any{"out": map[string]any{}},
		"env":       env,
	})
	r := b.in.run(string(data), "derivation", "add")
	if r.code != 0 {
		t.Fatalf("derivation add: %s", r.stderr)
	}
	drv := strings.TrimSpace(r.stdout)
	return drv, strings.TrimSpace(b.in.ok("query", "--outputs", drv))
}

// canonicalOutput checks that the registered output holds no setuid,
// setgid or sticky bit, no write bit, no extended attribute, and mtime 1.
func canonicalOutput(t *testing.T, b *battery, out string) string {
	t.Helper()
	real := filepath.Join(b.in.state, "store", filepath.Base(out))
	n := 0
	err := filepath.WalkDir(real, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		n++
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return nil
		}
		if st.Mode&0o7222 != 0 || st.Mtim.Sec != 1 {
			t.Errorf("%s has mode %o, mtime %d after registration", p, st.Mode&0o7777, st.Mtim.Sec)
		}
		if sz, _ := unix.Llistxattr(p, nil); sz > 0 {
			t.Errorf("%s has extended attributes after registration", p)
		}
		return nil
	})
	if err != nil {
		t.Errorf("walking %s: %v", real, err)
	}
	return fmt.Sprintf("output registered canonical (%d entries: no setuid/setgid bits, no xattrs)", n)
}

var escapeAttempts = []escapeAttempt{
	{name: "read-etc-shadow"},
	{name: "read-root-home"},
	{name: "read-host-file"},
	{name: "read-backing-store"},
	{name: "read-database"},
	{name: "write-host", contained: []string{"write /tmp", "write /build", "write /dev/shm", "make a store path that is not an output", "make a valid path that is not an input"},
		host: func(t *testing.T, b *battery, out string) string {
			data, err := os.ReadFile(filepath.Join(b.in.state, "store", filepath.Base(b.secret)))
			if err != nil || !strings.HasPrefix(string(data), "a valid path") {
				t.Errorf("the secret path holds %q, %v", data, err)
			}
			if host, _ := os.ReadFile(b.hostFile); string(host) != "host data\n" {
				t.Errorf("the host file holds %q", host)
			}
			return "valid path and host file unchanged"
		}},
	{name: "network"},
	{name: "see-host-processes"},
	{name: "signal-host-processes"},
	{name: "ptrace-host-process"},
	{name: "mount", contained: []string{"create a nested user namespace", "mount a tmpfs in a nested user namespace"}},
	{name: "device-nodes"},
	{name: "kernel-modules"},
	{name: "set-clock"},
	{name: "hostname", contained: []string{"hostname in a nested user and UTS namespace"}},
	{name: "setuid-setgid-files", contained: []string{"creat a file with mode 4755 in $out", "mkdir with mode 2775 in $out"}, host: canonicalOutput},
	{name: "xattrs", host: canonicalOutput},
	{name: "io-uring"},
	{name: "fill-dev-shm", contained: []string{"write 64 MiB to /dev/shm"}},
	{name: "proc-self-root"},
	{name: "inherited-fds"},
	{name: "linger-after-build", contained: []string{"start daemons and exit"}},
	{name: "output-symlink-to-host", contained: []string{"make $out a symlink to /etc/shadow"},
		host: func(t *testing.T, b *battery, out string) string {
			target, err := os.Readlink(filepath.Join(b.in.state, "store", filepath.Base(out)))
			if err != nil || target != "/etc/shadow" {
				t.Errorf("the output is %q, %v; want a symlink to /etc/shadow", target, err)
			}
			return "registered as a symlink; /etc/shadow untouched"
		}},
	{name: "output-links", contained: []string{"symlink $out/shadow to /etc/shadow", "symlink $out/up to ../../.."}, host: canonicalOutput},
	{name: "output-special-files", contained: []string{"mkfifo in $out", "bind a unix socket in $out"}, rejected: "has an unsupported type"},
	{name: "kernel-interfaces"},
	{name: "shared-directories"},
}

// TestSandbox_EscapeBattery runs each escape attempt as a real build
// through the storefs binary and checks both sides: inside, every step
// of the attempt fails (or reaches only what is the sandbox's own), and
// on the host nothing changed but the output appearing in the backing
// store: no file left anywhere, no process left running, the host's
// processes alive and unsignalled, listeners untouched, hostname, clock,
// mounts, kernel modules, /dev/shm, /etc/shadow, the database and the
// other valid paths as they were. It prints the table of attempts.
func TestSandbox_EscapeBattery(t *testing.T) {
	b := newBattery(t)
	type row struct{ attempt, step, inside, host string }
	var table []row
	for _, a := range escapeAttempts {
		t.Run(a.name, func(t *testing.T) {
			drv, out := b.addAttempt(t, a.name)
			before := b.snapshot(t)
			r := b.in.run("", "realise", drv)
			after := b.snapshot(t)
			added := filepath.Base(out)
			if a.rejected != "" {
				added = ""
				if r.code == 0 || !strings.Contains(r.stderr, a.rejected) {
					t.Errorf("realise: exit %d, stderr %q; want the output rejected (%q)", r.code, r.stderr, a.rejected)
				}
			} else if r.code != 0 {
				t.Fatalf("realise: exit %d\n%s", r.code, r.stderr)
			}
			hostOutcome := "unchanged"
			if changes := b.compare(before, after, added); len(changes) > 0 {
				for _, c := range changes {
					t.Errorf("host: %s", c)
				}
				hostOutcome = "CHANGED: " + strings.Join(changes, "; ")
			} else if a.host != nil {
				hostOutcome = "unchanged; " + a.host(t, b, out)
			} else if a.rejected != "" {
				hostOutcome = "unchanged; output rejected at registration"
			}
			log := b.in.run("", "log", drv).stdout
			if !strings.Contains(log, "\nDONE") && !strings.HasPrefix(log, "DONE") {
				t.Errorf("the probe did not finish; log:\n%s", log)
			}
			steps := 0
			for _, line := range strings.Split(log, "\n") {
				rest, ok := strings.CutPrefix(line, "STEP ")
				if !ok {
					continue
				}
				i := strings.LastIndex(rest, ": blocked")
				if j := strings.LastIndex(rest, ": contained"); j > i {
					i = j
				}
				for _, bad := range []string{": escaped", ": unexpected"} {
					if j := strings.LastIndex(rest, bad); j > i {
						i = j
					}
				}
				if i < 0 {
					t.Errorf("unparsable report line %q", line)
					continue
				}
				name, inside := rest[:i], strings.TrimSpace(rest[i+1:])
				steps++
				switch {
				case strings.HasPrefix(inside, "blocked"):
				case strings.HasPrefix(inside, "contained") && contains(a.contained, name):
				default:
					t.Errorf("step %q: %s", name, inside)
				}
				table = append(table, row{a.name, name, inside, hostOutcome})
				hostOutcome = `"`
			}
			if steps == 0 {
				t.Errorf("the probe reported no step; log:\n%s", log)
			}
		})
	}
	if r := b.in.run("", "verify", "--check-contents"); r.code != 0 {
		t.Errorf("verify --check-contents after the battery: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var buf bytes.Buffer
	w := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "attempt\tstep\tinside the sandbox\thost")
	last := ""
	for _, r := range table {
		attempt := r.attempt
		if attempt == last {
			attempt = ""
		}
		last = r.attempt
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", attempt, r.step, r.inside, r.host)
	}
	w.Flush()
	t.Logf("sandbox escape battery (%d attempts, %d steps):\n%s", len(escapeAttempts), len(table), buf.String())
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
