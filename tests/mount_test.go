package tests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// mounted is a running `storefs mount` of an instance.
type mounted struct {
	in     *instance
	dir    string
	cmd    *exec.Cmd
	stderr *syncBuffer
	exited chan error
}

// syncBuffer is a bytes.Buffer safe to read while a process writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// mount starts `storefs mount` on a fresh directory and waits until the
// mount and the daemon socket are up. The test's cleanup stops it with
// SIGTERM and checks that nothing stays mounted.
func (in *instance) mount(args ...string) *mounted {
	in.t.Helper()
	dir := filepath.Join(in.t.TempDir(), "mnt")
	os.MkdirAll(dir, 0o755)
	m := &mounted{in: in, dir: dir, stderr: &syncBuffer{}, exited: make(chan error, 1)}
	m.cmd = exec.Command(storefsBin, append(append([]string{"--state-dir", in.state, "--verbose"}, args...), "mount", dir)...)
	m.cmd.Stderr = m.stderr
	if err := m.cmd.Start(); err != nil {
		in.t.Fatal(err)
	}
	go func() { m.exited <- m.cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for !isMountpoint(dir) || !exists(filepath.Join(in.state, "daemon.sock")) {
		select {
		case err := <-m.exited:
			in.t.Fatalf("storefs mount exited: %v\n%s", err, m.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			m.cmd.Process.Kill()
			in.t.Fatalf("the mount did not come up:\n%s", m.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	in.t.Cleanup(func() {
		m.stop(in.t)
	})
	return m
}

// stop sends SIGTERM and checks that the daemon unmounted and exited.
func (m *mounted) stop(t testing.TB) {
	if m.cmd.ProcessState != nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-m.exited:
		if err != nil {
			t.Errorf("storefs mount exited with %v\n%s", err, m.stderr.String())
		}
	case <-time.After(30 * time.Second):
		m.cmd.Process.Kill()
		<-m.exited
		t.Errorf("storefs mount did not stop on SIGTERM")
	}
	if isMountpoint(m.dir) {
		t.Errorf("%s is still mounted after the daemon stopped", m.dir)
		syscall.Unmount(m.dir, syscall.MNT_DETACH)
	}
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

func isMountpoint(dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

// path is the mount's view of a store path.
func (m *mounted) path(storePath string) string {
	return filepath.Join(m.dir, filepath.Base(storePath))
}

// sh runs a shell command (a subprocess reaches the mount: the test
// process itself must not, as go-fuse serves it from the daemon).
func sh(t testing.TB, script string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/bin/sh", "-c", script).CombinedOutput()
	return string(out), err
}

// builds counts the builds the daemon started (its --verbose log).
func (m *mounted) builds(drv string) int {
	return strings.Count(m.stderr.String(), "msg=building drv="+drv)
}

// mountFixture imports busybox and the fixture's derivations (before the
// mount, as plain CLI commands) and mounts.
func mountFixture(t *testing.T, cases ...string) (*instance, *mounted) {
	in := newInstance(t)
	in.ok("add", busyboxDir(t))
	for _, c := range cases {
		in.ok("derivation", "add", filepath.Join(fixturesDir(t), "drvs", c+".drv"))
	}
	return in, in.mount()
}

// TestMount_ValidPaths: stat, cat, ls and exec of a valid path through the
// mount; the root lists valid paths.
func TestMount_ValidPaths(t *testing.T) {
	_, m := mountFixture(t)
	bb := m.path(busyboxPath) + "/bin/busybox"
	out, err := sh(t, fmt.Sprintf("sha256sum %s && stat -c '%%a %%s %%Y' %s && %s echo exec-works && ls %s", bb, bb, bb, m.dir))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{
		"3d9f2889d6782537624a4e1a10e68a2ddd53e0ee8bac02676f27308f42ec6bf6",
		"555 1982256 1\n",
		"exec-works\n",
		filepath.Base(busyboxPath) + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// Read-only.
	if out, err := sh(t, "touch "+m.dir+"/x"); err == nil {
		t.Errorf("creating a file in the mount succeeded: %s", out)
	}
}

// TestMount_BuildOnLookup: reading a file of an output that is not built
// yet builds it and returns Nix's content; a second read is served from
// the store; 100 concurrent stats of an unbuilt path give one build.
func TestMount_BuildOnLookup(t *testing.T) {
	_, m := mountFixture(t, "trivial", "store/ilzckxkbgq2gfisa7c0mk2z4ykv7jpy7-leaf", "tree")
	trivial := "/nix/store/8z3rv77c71xvmyyijyry9760g7fbghah-trivial"
	out, err := sh(t, "cat "+m.path(trivial))
	if err != nil || out != "hello from trivial\n" {
		t.Fatalf("cat = %q, %v\n%s", out, err, m.stderr.String())
	}
	if out, err := sh(t, "cat "+m.path(trivial)); err != nil || out != "hello from trivial\n" {
		t.Fatalf("second cat = %q, %v", out, err)
	}
	if n := m.builds("/nix/store/ylidkad964ccmaay0qrd9zdywj84gw6f-trivial.drv"); n != 1 {
		t.Errorf("trivial built %d times, want 1", n)
	}

	tree := "/nix/store/k35x0wsa2pfa2v6ci8nn32cs5065pgg7-tree"
	script := ""
	for i := 0; i < 100; i++ {
		script += fmt.Sprintf("stat %s/bin/hello > /dev/null || echo FAIL & ", m.path(tree))
	}
	out, err = sh(t, script+"wait")
	if err != nil || strings.Contains(out, "FAIL") {
		t.Fatalf("concurrent stats: %v\n%s\n%s", err, out, m.stderr.String())
	}
	if n := m.builds("/nix/store/y1aa26vax01m0jkcm56a8z5gpb9jrz8a-tree.drv"); n != 1 {
		t.Errorf("tree built %d times, want 1", n)
	}
}

// TestMount_Failure: a failing build is EIO, and its log is readable.
func TestMount_Failure(t *testing.T) {
	in, m := mountFixture(t, "fail-exit1")
	out, err := sh(t, "cat /dev/null "+m.path("/nix/store/a2jimbkfajik4k7mwc59wbdyawvvgsi1-fail-exit1")+" 2>&1")
	if err == nil || !strings.Contains(out, "Input/output error") {
		t.Fatalf("cat of a failing output = %q, %v; want EIO", out, err)
	}
	if got := in.ok("log", "/nix/store/8rzax821yydfmljmpnz4s75v1l15qlwn-fail-exit1.drv"); !strings.Contains(got, "about to fail") {
		t.Errorf("storefs log = %q", got)
	}
	// Remembered: a second lookup does not build again.
	sh(t, "stat "+m.path("/nix/store/a2jimbkfajik4k7mwc59wbdyawvvgsi1-fail-exit1"))
	if n := m.builds("/nix/store/8rzax821yydfmljmpnz4s75v1l15qlwn-fail-exit1.drv"); n != 1 {
		t.Errorf("the failing derivation was built %d times, want 1", n)
	}
}

// TestMount_AppearsAfterRealise: a name that got ENOENT appears at once
// when `storefs realise` (through the daemon) makes it valid.
func TestMount_AppearsAfterRealise(t *testing.T) {
	in, m := mountFixture(t)
	trivial := "/nix/store/8z3rv77c71xvmyyijyry9760g7fbghah-trivial"
	if out, err := sh(t, "stat "+m.path(trivial)); err == nil {
		t.Fatalf("stat of an unknown path succeeded: %s", out)
	}
	in.ok("derivation", "add", filepath.Join(fixturesDir(t), "drvs", "trivial.drv"))
	if got := strings.TrimSpace(in.ok("realise", "/nix/store/ylidkad964ccmaay0qrd9zdywj84gw6f-trivial.drv")); got != trivial {
		t.Fatalf("realise = %q", got)
	}
	if out, err := sh(t, "cat "+m.path(trivial)); err != nil || out != "hello from trivial\n" {
		t.Errorf("cat right after realise = %q, %v", out, err)
	}
}

// TestMount_OtherLookupsDoNotWait: while a slow build runs for one lookup,
// lookups and reads of valid paths answer at once; a waiter killed with
// SIGKILL returns promptly and the build still finishes.
func TestMount_OtherLookupsDoNotWait(t *testing.T) {
	in, m := mountFixture(t)
	drv, out := in.addDrv("slow", "sleep 5; echo done > $out", nil)
	waiter := exec.Command("/bin/cat", m.path(out))
	if err := waiter.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for m.builds(drv) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the build did not start:\n%s", m.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	if out, err := sh(t, "stat "+m.path(busyboxPath)+"/bin/busybox && ls "+m.dir+" && "+m.path(busyboxPath)+"/bin/busybox true"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("valid paths took %v to answer while a build ran", d)
	}
	waiter.Process.Kill()
	killed := make(chan struct{})
	go func() { waiter.Wait(); close(killed) }()
	select {
	case <-killed:
	case <-time.After(3 * time.Second):
		t.Errorf("a waiter killed with SIGKILL did not return promptly")
	}
	// The build goes on and the next lookup finds the path.
	if got, err := sh(t, "cat "+m.path(out)); err != nil || got != "done\n" {
		t.Errorf("cat after the killed waiter = %q, %v", got, err)
	}
	if n := m.builds(drv); n != 1 {
		t.Errorf("built %d times, want 1", n)
	}
}

// TestMount_FindMatchesBacking: find over a mounted output shows the same
// tree (modes, sizes, symlink targets) as the backing store.
func TestMount_FindMatchesBacking(t *testing.T) {
	in, m := mountFixture(t, "store/ilzckxkbgq2gfisa7c0mk2z4ykv7jpy7-leaf", "tree")
	tree := "/nix/store/k35x0wsa2pfa2v6ci8nn32cs5065pgg7-tree"
	list := func(dir string) string {
		out, err := sh(t, fmt.Sprintf("cd %s && find . -printf '%%p %%M %%s %%l\\n' | sort", dir))
		if err != nil {
			t.Fatalf("find in %s: %v\n%s", dir, err, out)
		}
		return out
	}
	mounted := list(m.path(tree))
	backing := list(filepath.Join(in.state, "store", filepath.Base(tree)))
	if mounted != backing {
		t.Errorf("find through the mount:\n%s\nin the backing store:\n%s", mounted, backing)
	}
	if !strings.Contains(mounted, "./dep-link lrwxrwxrwx") || !strings.Contains(mounted, "./bin/hello -r-xr-xr-x") {
		t.Errorf("unexpected tree:\n%s", mounted)
	}
}

// TestMount_RefusesNonEmpty: mounting over a non-empty directory or an
// existing storefs mount is refused without --force.
func TestMount_RefusesNonEmpty(t *testing.T) {
	in := newInstance(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "x"), nil, 0o644)
	r := in.run("", "mount", dir)
	if r.code == 0 || !strings.Contains(r.stderr, "is not empty; use --force") {
		t.Errorf("mount over a non-empty directory: exit %d, %s", r.code, r.stderr)
	}
	if isMountpoint(dir) {
		syscall.Unmount(dir, syscall.MNT_DETACH)
		t.Fatal("it mounted anyway")
	}
}

// TestMount_RealiseSettingsReachTheDaemon: a realise run through the mount
// daemon's worker builds with its own --keep-failed and --timeout (as a
// Nix daemon takes settings from each client), and is warned that -j stays
// the daemon's; settings it does not set are the daemon's, unremarked.
func TestMount_RealiseSettingsReachTheDaemon(t *testing.T) {
	in := newInstance(t)
	in.ok("add", busyboxDir(t))
	in.mount("--option", "max-jobs", "2")
	failing, _ := in.addDrv("fails", "echo about to fail; exit 1", nil)
	r := in.run("", "realise", "--keep-failed", "-j", "4", failing)
	if r.code != 100 {
		t.Fatalf("realise of a failing derivation: exit %d, want 100\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "note: keeping build directory '"+in.state+"/failed/") {
		t.Errorf("--keep-failed through the daemon kept nothing:\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, "warning: 'max-jobs' is the mount daemon's ('2'), not '4'") {
		t.Errorf("no warning that -j stays the daemon's:\n%s", r.stderr)
	}

	slow, _ := in.addDrv("slow", "sleep 30; mkdir $out", nil)
	start := time.Now()
	r = in.run("", "realise", "--timeout", "1", slow)
	if r.code != 101 || !strings.Contains(r.stderr, "timed out after 1 seconds") {
		t.Errorf("realise --timeout 1 through the daemon: exit %d, want 101 and a timeout\n%s", r.code, r.stderr)
	}
	// Settings the command does not set are the daemon's, unremarked.
	if strings.Contains(r.stderr, "warning:") {
		t.Errorf("a realise that sets no daemon-wide setting was warned:\n%s", r.stderr)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the timeout took %v", d)
	}
}
