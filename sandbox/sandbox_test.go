package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/storefs/storefs/sandbox"
)

func TestNew_Invalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts *sandbox.Options
	}{
		{"IDCountBelowOneSlot", &sandbox.Options{UIDLockDir: t.TempDir(), IDCount: 1000}},
		{"RangeOverflows", &sandbox.Options{UIDLockDir: t.TempDir(), StartID: 1 << 31, IDCount: 1 << 31}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := sandbox.New(tc.opts); err == nil {
				t.Errorf("New(%+v) = nil error, want one", tc.opts)
			}
		})
	}
}

// TestNew_Defaults: nil Options mean the defaults, with the machine-wide
// uid lock directory.
func TestNew_Defaults(t *testing.T) {
	r, err := sandbox.New(nil)
	if err != nil {
		t.Fatalf("New(nil) = %v", err)
	}
	r.Close()
}

func TestRunner_Run_InvalidSpec(t *testing.T) {
	r := newRunner(t, nil)
	for _, tc := range []struct {
		name   string
		modify func(*sandbox.Spec)
	}{
		{"RelativeStoreDir", func(s *sandbox.Spec) { s.StoreDir = "nix/store" }},
		{"OutputOutsideStore", func(s *sandbox.Spec) { s.Outputs = []string{"/tmp/x"} }},
		{"InputOutsideStore", func(s *sandbox.Spec) { s.Inputs = map[string]string{"/usr": "/usr"} }},
		{"FileNameWithSlash", func(s *sandbox.Spec) { s.Files = map[string][]byte{"a/b": nil} }},
		{"EnvNameWithEquals", func(s *sandbox.Spec) { s.Env = map[string]string{"A=B": ""} }},
		{"NoBuilder", func(s *sandbox.Spec) { s.Builder = "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := newSpec(t, "mkdir $out")
			tc.modify(spec)
			_, res, err := tryBuilder(t, r, spec)
			var se *sandbox.SetupError
			if err == nil || errors.As(err, &se) || res != nil {
				t.Errorf("Run() = %v, %v; want a validation error", res, err)
			}
		})
	}
}

// TestRunner_Run_Identity checks the ids: 1000 and 100 inside, a pool uid
// outside, which owns the output.
func TestRunner_Run_Identity(t *testing.T) {
	spec := newSpec(t, "mkdir $out; id -u > $out/uid; id -g > $out/gid; id > $out/id")
	_, res := runBuilder(t, spec)
	for name, want := range map[string]string{"uid": "1000\n", "gid": "100\n", "id": "uid=1000(nixbld) gid=100(nixbld)\n"} {
		if got := readOutput(t, spec, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if os.Getuid() != 0 {
		if res.UID != os.Getuid() {
			t.Errorf("Result.UID = %d, want our uid %d", res.UID, os.Getuid())
		}
		return
	}
	if res.UID < testStartID || res.UID >= testStartID+testIDCount || (res.UID-testStartID)%65536 != 0 || res.GID != res.UID {
		t.Errorf("Result ids = %d/%d, want a slot of the pool starting at %d", res.UID, res.GID, testStartID)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(spec.OutputDir, filepath.Base(outPath)), &st); err != nil {
		t.Fatal(err)
	}
	if int(st.Uid) != res.UID || int(st.Gid) != res.GID {
		t.Errorf("output owned by %d:%d, want %d:%d", st.Uid, st.Gid, res.UID, res.GID)
	}
}

// TestRunner_Run_Isolation checks what the builder can see, one scenario
// per build.
func TestRunner_Run_Isolation(t *testing.T) {
	hostFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(hostFile, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		script string // writes its answer to $out/r
		want   string
	}{
		{"Hostname", `hostname > $out/r; cat /proc/sys/kernel/domainname >> $out/r`, "localhost\n(none)\n"},
		{"OnlyLoopback", `awk 'NR>2 {sub(":", "", $1); print $1}' /proc/net/dev > $out/r`, "lo\n"},
		{"LoopbackUp", `ip -o link show lo | grep -q 'UP' && echo up > $out/r`, "up\n"},
		{"NoShadow", `if [ -e /etc/shadow ]; then echo present; else echo absent; fi > $out/r`, "absent\n"},
		{"NoHostFiles", `if [ -e ` + hostFile + ` ] || [ -e /usr ] || [ -e /bin ]; then echo visible; else echo hidden; fi > $out/r`, "hidden\n"},
		{"StoreHasOnlyInputs", `ls -A /nix/store > $out/r`, filepath.Base(outPath) + "\n" + busyboxBase + "\n"},
		{"InputsReadOnly", `if touch /nix/store/` + busyboxBase + `/x 2>/dev/null; then echo writable; else echo read-only; fi > $out/r`, "read-only\n"},
		{"Pid1", `echo $$ > $out/r`, "1\n"},
		{"Setuid", `touch $TMPDIR/f; chmod u+s $TMPDIR/f 2>/dev/null || echo denied > $out/r; stat -c %a $TMPDIR/f >> $out/r`, "denied\n644\n"},
		{"Setgid", `mkdir $TMPDIR/d; chmod g+s $TMPDIR/d 2>/dev/null || echo denied > $out/r`, "denied\n"},
		{"NoNewPrivsAndSeccomp", `grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status | tr -d '\t' > $out/r`, "NoNewPrivs:1\nSeccomp:2\n"},
		{"NoCapabilities", `grep -E '^Cap(Inh|Prm|Eff|Amb):' /proc/self/status | tr -d '\t' > $out/r`, "CapInh:0000000000000000\nCapPrm:0000000000000000\nCapEff:0000000000000000\nCapAmb:0000000000000000\n"},
		{"NoGroups", `grep '^Groups:' /proc/self/status | tr -d ' \t' > $out/r`, "Groups:\n"},
		{"Umask", `umask > $out/r`, "0022\n"},
		{"TmpIsEmptyAndWritable", `ls -A /tmp > $out/r; touch /tmp/x && echo ok >> $out/r`, "ok\n"},
		{"StoreIsWritable", `touch /nix/store/junk && echo ok > $out/r`, "ok\n"},
		{"DevShmIsPrivate", `touch /dev/shm/x && ls /dev/shm > $out/r`, "x\n"},
		{"Ptmx", `[ -c /dev/pts/ptmx ] && [ -L /dev/ptmx ] && echo ok > $out/r`, "ok\n"},
		{"NoTTY", `tty > $out/r || true`, "not a tty\n"},
		{"Cwd", `pwd > $out/r; echo $PWD >> $out/r`, "/build\n/build\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec := newSpec(t, "mkdir $out\n"+tc.script)
			log, res := runBuilder(t, spec)
			if res.ExitCode != 0 {
				t.Fatalf("builder exit code = %d, want 0; log:\n%s", res.ExitCode, log)
			}
			if got := readOutput(t, spec, "r"); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestRunner_Run_Network checks that a build cannot reach a listener on
// the host's loopback, and that a fixed-output build, which shares the
// host's network, can.
func TestRunner_Run_Network(t *testing.T) {
	port, accepted := listenLoopback(t)
	script := "mkdir $out\nif echo hello | nc 127.0.0.1 " + strconv.Itoa(port) + "; then echo connected; else echo refused; fi > $out/r"
	for _, tc := range []struct {
		name        string
		fixedOutput bool
		want        string
	}{
		{"Sandboxed", false, "refused\n"},
		{"FixedOutput", true, "connected\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := newSpec(t, script)
			spec.FixedOutput = tc.fixedOutput
			runBuilder(t, spec)
			if got := readOutput(t, spec, "r"); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			if tc.fixedOutput {
				select {
				case msg := <-accepted:
					if msg != "hello\n" {
						t.Errorf("listener received %q, want %q", msg, "hello\n")
					}
				case <-time.After(10 * time.Second):
					t.Errorf("listener saw no connection")
				}
			}
		})
	}
	select {
	case msg := <-accepted:
		t.Errorf("listener received %q from somewhere", msg)
	default:
	}
}

// listenLoopback listens on a free port of 127.0.0.1 and sends what each
// connection sent on the channel. It uses raw syscalls, from when this
// package did not link package net (builtin:fetchurl now does).
func listenLoopback(t testing.TB) (int, <-chan string) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 8); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan string, 8)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, _, err := syscall.Accept4(fd, syscall.SOCK_CLOEXEC)
			if err != nil {
				return
			}
			f := os.NewFile(uintptr(c), "conn")
			b := make([]byte, 64)
			n, _ := f.Read(b)
			f.Close()
			ch <- string(b[:n])
		}
	}()
	t.Cleanup(func() {
		syscall.Shutdown(fd, syscall.SHUT_RDWR)
		syscall.Close(fd)
		wg.Wait()
	})
	return sa.(*syscall.SockaddrInet4).Port, ch
}

// TestRunner_Run_Seccomp runs a static probe binary as the builder to
// make the syscalls that busybox cannot (xattrs, fchmodat2, io_uring), and
// to check the process attributes of the builder.
func TestRunner_Run_Seccomp(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	spec := newSpec(t, "")
	probeBase := "3f7kq2aa2h3k6cdyxa9gy9y3d0xwfyf1-probe"
	dir := filepath.Join(t.TempDir(), probeBase)
	build := exec.Command(goTool, "build", "-o", filepath.Join(dir, "bin", "probe"), "./testdata/probe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the probe: %v\n%s", err, out)
	}
	spec.Inputs[storeDir+"/"+probeBase] = dir
	spec.Builder = storeDir + "/" + probeBase + "/bin/probe"
	spec.Args = nil
	log, res := runBuilder(t, spec)
	if res.ExitCode != 0 {
		t.Fatalf("probe exit code = %d, want 0; log:\n%s", res.ExitCode, log)
	}
	want := []string{
		"setxattr: ENOTSUP",
		"lsetxattr: ENOTSUP",
		"fsetxattr: ENOTSUP",
		"chmod 4755: EPERM",
		"chmod 2755: EPERM",
		"fchmod 4755: EPERM",
		"fchmodat 2755: EPERM",
		"fchmodat2 4755: EPERM",
		"chmod 755: ok",
		"io_uring_setup: ENOSYS",
		"groups: [] <nil>",
		"addr_no_randomize: true",
		"core limit: 0",
		"umask: 022",
		"open fds: 3",
		"stdin: /dev/null",
		"stdout is a terminal: true",
		"pid: 1",
		"CapInh: 0000000000000000",
		"CapPrm: 0000000000000000",
		"CapEff: 0000000000000000",
		"CapAmb: 0000000000000000",
		"NoNewPrivs: 1",
		"Seccomp: 2",
	}
	got := strings.Split(strings.TrimSpace(log), "\n")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("probe reported:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestRunner_Run_DaemonIsKilled checks that a builder that forks a daemon
// and exits leaves nothing running: the daemon dies with the builder's pid
// namespace.
func TestRunner_Run_DaemonIsKilled(t *testing.T) {
	spec := newSpec(t, "mkdir $out\nsleep 1000 &\nsetsid sleep 1000 &\nexit 0")
	start := time.Now()
	_, res := runBuilder(t, spec) // checkLeftovers looks for processes of the build's uid
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("Run took %v: it waited for the daemon", d)
	}
	if res.ExitCode != 0 {
		t.Errorf("exit code = %d, want 0", res.ExitCode)
	}
}

// TestRunner_Run_SetupError checks that a build whose environment cannot be
// set up fails with a *SetupError naming the reason, and leaves nothing
// behind.
func TestRunner_Run_SetupError(t *testing.T) {
	for _, tc := range []struct {
		name     string
		modify   func(*sandbox.Spec)
		wantStep string
		wantIs   error
	}{
		{"MissingSandboxPath", func(s *sandbox.Spec) {
			s.SandboxPaths = []sandbox.BindPath{{Target: "/missing", Source: "/does/not/exist"}}
		}, "sandbox-paths", fs.ErrNotExist},
		{"MissingBuilder", func(s *sandbox.Spec) {
			s.Builder = storeDir + "/" + busyboxBase + "/bin/nothing"
		}, "exec builder", fs.ErrNotExist},
		{"MissingInput", func(s *sandbox.Spec) {
			s.Inputs[storeDir+"/9w3gk6jf8z2ivkkxvmwymqg6z6mbxf4b-gone"] = "/does/not/exist"
		}, "inputs", fs.ErrNotExist},
		{"BuilderNotExecutable", func(s *sandbox.Spec) {
			s.Builder = "/etc/passwd"
		}, "exec builder", fs.ErrPermission},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := newSpec(t, "mkdir $out")
			spec.KeepBuildDir = true // kept only for a builder that ran
			tc.modify(spec)
			log, res, err := tryBuilder(t, newRunner(t, nil), spec)
			var se *sandbox.SetupError
			if !errors.As(err, &se) {
				t.Fatalf("Run() = %+v, %v; want a *SetupError; log:\n%s", res, err, log)
			}
			if se.Step != tc.wantStep || !errors.Is(err, tc.wantIs) {
				t.Errorf("Run() = %v; want step %q and errors.Is %v", err, tc.wantStep, tc.wantIs)
			}
			if !strings.HasPrefix(err.Error(), "while setting up the build environment: ") {
				t.Errorf("error %q lacks Nix's prefix", err)
			}
		})
	}
}

func TestRunner_Run_OptionalSandboxPath(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := newSpec(t, "mkdir $out; cat /host/f > $out/r; if [ -e /opt ]; then echo opt; fi >> $out/r")
	spec.SandboxPaths = []sandbox.BindPath{
		{Target: "/host", Source: src},
		{Target: "/opt", Source: "/does/not/exist", Optional: true},
	}
	runBuilder(t, spec)
	if got, want := readOutput(t, spec, "r"), "from the host\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestRunner_Run_ParallelBuilds runs builds that wait for each other, so
// that they surely overlap, and checks that each got its own uid (as root;
// otherwise there is no uid pool, and all run as the caller).
func TestRunner_Run_ParallelBuilds(t *testing.T) {
	const n = 4
	gate := t.TempDir()
	os.Chmod(gate, 0o755)
	r := newRunner(t, nil)
	var wg sync.WaitGroup
	started := make(chan struct{}, n)
	results := make([]*sandbox.Result, n)
	specs := make([]*sandbox.Spec, n)
	for i := range n {
		spec := newSpec(t, "mkdir $out; echo started; while [ ! -e /gate/open ]; do sleep 0.01; done")
		specs[i] = spec
		spec.SandboxPaths = []sandbox.BindPath{{Target: "/gate", Source: gate}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var once sync.Once
			log := &syncBuffer{notify: func(s string) {
				if strings.Contains(s, "started") {
					once.Do(func() { started <- struct{}{} })
				}
			}}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			res, err := r.Run(ctx, spec, log)
			if err != nil {
				t.Errorf("Run() = %v, want nil", err)
			}
			results[i] = res
		}()
	}
	for range n {
		select {
		case <-started:
		case <-time.After(time.Minute):
			t.Fatal("builds did not start")
		}
	}
	if err := os.WriteFile(filepath.Join(gate, "open"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, spec := range specs {
		checkLeftovers(t, spec, results[i])
	}
	seen := map[int]bool{}
	for _, res := range results {
		if res == nil {
			continue
		}
		if os.Getuid() != 0 {
			if res.UID != os.Getuid() {
				t.Errorf("Result.UID = %d, want the caller's %d", res.UID, os.Getuid())
			}
			continue
		}
		if seen[res.UID] {
			t.Errorf("uid %d used by two concurrent builds", res.UID)
		}
		seen[res.UID] = true
	}
}

// TestRunner_Run_Cancel cancels a running build: Run returns the cause
// promptly and leaves nothing running, mounted or on disk.
func TestRunner_Run_Cancel(t *testing.T) {
	r := newRunner(t, nil)
	spec := newSpec(t, "mkdir $out; sleep 1000 & echo started; sleep 1000")
	ctx, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("test cancelled the build")
	log := &syncBuffer{notify: func(s string) {
		if strings.Contains(s, "started") {
			cancel(cause)
		}
	}}
	start := time.Now()
	res, err := r.Run(ctx, spec, log)
	if !errors.Is(err, cause) {
		t.Fatalf("Run() = %+v, %v; want %v", res, err, cause)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("Run took %v after cancellation", d)
	}
	if res == nil || res.Signal != syscall.SIGKILL {
		t.Errorf("Result = %+v, want the builder killed by SIGKILL", res)
	}
	checkLeftovers(t, spec, res)
	if ents, _ := os.ReadDir(spec.OutputDir); len(ents) != 0 {
		t.Errorf("output of a cancelled build was moved: %v", ents)
	}
}

// errLogFull is what limitedWriter returns past its limit.
var errLogFull = errors.New("log limit reached")

// limitedWriter fails once more than n bytes were written, like a caller
// enforcing max-build-log-size.
type limitedWriter struct {
	mu sync.Mutex
	n  int
}

func (w *limitedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n -= len(p)
	if w.n < 0 {
		return 0, errLogFull
	}
	return len(p), nil
}

// TestRunner_Run_LogWriterError checks that a failing log writer ends the
// build, and Run returns its error.
func TestRunner_Run_LogWriterError(t *testing.T) {
	r := newRunner(t, nil)
	spec := newSpec(t, "mkdir $out; sleep 1000 & yes")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := r.Run(ctx, spec, &limitedWriter{n: 1 << 20})
	if !errors.Is(err, errLogFull) {
		t.Fatalf("Run() = %+v, %v; want %v", res, err, errLogFull)
	}
	checkLeftovers(t, spec, res)
}

// TestRunner_Run_Outputs checks that the declared outputs the builder made
// are moved to OutputDir, and nothing else it wrote in the store survives;
// and that a kept build directory is reported.
func TestRunner_Run_Outputs(t *testing.T) {
	dev := storeDir + "/1b3mvq9hks8g1lq5bjix0a6v2xjqqy1s-test-dev"
	missing := storeDir + "/7dqk0gnbx1z3cwpwdq8b1zl9d4fq5v0r-test-doc"
	spec := newSpec(t, "mkdir $out $dev /nix/store/junk; echo a > $out/a; echo b > $dev/b; echo kept > kept")
	spec.Env["dev"] = dev
	spec.Outputs = append(spec.Outputs, dev, missing)
	spec.KeepBuildDir = true
	_, res := runBuilder(t, spec)
	ents, err := os.ReadDir(spec.OutputDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if got, want := strings.Join(names, " "), filepath.Base(outPath)+" "+filepath.Base(dev); got != want {
		t.Errorf("OutputDir holds %q, want %q", got, want)
	}
	if got := readOutput(t, spec, "a"); got != "a\n" {
		t.Errorf("out/a = %q, want %q", got, "a\n")
	}
	if res.BuildDir == "" {
		t.Fatal("Result.BuildDir is empty with KeepBuildDir")
	}
	if b, err := os.ReadFile(filepath.Join(res.BuildDir, "kept")); err != nil || string(b) != "kept\n" {
		t.Errorf("kept build directory: %q, %v; want the builder's file", b, err)
	}
	os.RemoveAll(res.BuildDir)
}

// TestRunner_Run_Files checks the files written into the build directory:
// mode 0644, owned by the build user, as Nix writes them.
func TestRunner_Run_Files(t *testing.T) {
	spec := newSpec(t, "mkdir $out; stat -c '%a %u %g' .attrs.json > $out/r; cat .attrs.json >> $out/r; stat -c '%a %u %g' . >> $out/r")
	spec.Files = map[string][]byte{".attrs.json": []byte(`{"a":1}`)}
	runBuilder(t, spec)
	if got, want := readOutput(t, spec, "r"), "644 1000 100\n{\"a\":1}700 1000 100\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestRunner_Run_Env checks the environment against Nix 2.8's initEnv:
// the fixed variables, which of them the derivation may override, and the
// extra ones of fixed-output derivations.
func TestRunner_Run_Env(t *testing.T) {
	for _, tc := range []struct {
		name        string
		fixedOutput bool
		want        string
	}{
		{"Sandboxed", false, `HOME=/homeless-shelter
NIX_BUILD_CORES=3
NIX_BUILD_TOP=/build
NIX_LOG_FD=2
NIX_STORE=/nix/store
PATH=/my/path
PWD=/build
SHLVL=1
TEMP=/build
TEMPDIR=/build
TERM=xterm-256color
TMP=/build
TMPDIR=/build
name=test
out=` + outPath + `
`},
		{"FixedOutput", true, `HOME=/homeless-shelter
NIX_BUILD_CORES=3
NIX_BUILD_TOP=/build
NIX_LOG_FD=2
NIX_OUTPUT_CHECKED=1
NIX_STORE=/nix/store
PATH=/my/path
PWD=/build
SHLVL=1
TEMP=/build
TEMPDIR=/build
TERM=xterm-256color
TMP=/build
TMPDIR=/build
http_proxy=http://proxy
name=test
out=` + outPath + `
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := newSpec(t, "mkdir $out; env | sort > $out/r")
			spec.Cores = 3
			spec.FixedOutput = tc.fixedOutput
			spec.Env["PATH"] = "/my/path"            // may override
			spec.Env["NIX_BUILD_TOP"] = "/elsewhere" // may not
			spec.Env["TERM"] = "dumb"                // may not
			spec.ImpureEnv = map[string]string{"http_proxy": "http://proxy"}
			runBuilder(t, spec)
			if got := readOutput(t, spec, "r"); got != tc.want {
				t.Errorf("environment:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

// TestRunner_Run_FixedOutputEtc checks /etc of a fixed-output build: Nix's
// nsswitch.conf and the host's resolv.conf, services and hosts (those that
// exist).
func TestRunner_Run_FixedOutputEtc(t *testing.T) {
	spec := newSpec(t, "mkdir $out; ls -A /etc > $out/r; cat /etc/nsswitch.conf > $out/ns")
	spec.FixedOutput = true
	runBuilder(t, spec)
	want := "group\n"
	for _, f := range []string{"hosts", "nsswitch.conf", "passwd", "resolv.conf", "services"} {
		if f == "nsswitch.conf" || f == "passwd" {
			want += f + "\n"
			continue
		}
		if _, err := os.Stat("/etc/" + f); err == nil {
			want += f + "\n"
		}
	}
	if got := readOutput(t, spec, "r"); got != want {
		t.Errorf("/etc lists %q, want %q", got, want)
	}
	if got, want := readOutput(t, spec, "ns"), "hosts: files dns\nservices: files\n"; got != want {
		t.Errorf("nsswitch.conf = %q, want %q", got, want)
	}
}

// TestRunner_Run_Inputs checks inputs that are not directories: a regular
// file is bound, a symlink recreated.
func TestRunner_Run_Inputs(t *testing.T) {
	spec := newSpec(t, "mkdir $out; cat /nix/store/f3l6n7p3g1a8x2s0i3d2q5zvy4b7r9c1-file > $out/r; readlink /nix/store/c1m2xw4lq0d6h7j8f9g0s1z2v3b4n5k6-link >> $out/r")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "file"), []byte("a file input\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(busyboxBase+"/bin/busybox", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	spec.Inputs[storeDir+"/f3l6n7p3g1a8x2s0i3d2q5zvy4b7r9c1-file"] = filepath.Join(dir, "file")
	spec.Inputs[storeDir+"/c1m2xw4lq0d6h7j8f9g0s1z2v3b4n5k6-link"] = filepath.Join(dir, "link")
	runBuilder(t, spec)
	if got, want := readOutput(t, spec, "r"), "a file input\n"+busyboxBase+"/bin/busybox\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestRunner_Run_BuilderFails checks that a failing builder is a Result,
// not an error, and that its output reaches the log unchanged (raw pty).
func TestRunner_Run_BuilderFails(t *testing.T) {
	spec := newSpec(t, "echo line one; echo line two >&2; exit 3")
	log, res := runBuilder(t, spec)
	if res.ExitCode != 3 || res.Signal != 0 {
		t.Errorf("Result = %+v, want exit code 3", res)
	}
	if want := "line one\nline two\n"; log != want {
		t.Errorf("log = %q, want %q", log, want)
	}
}

// TestRunner_Run_Disabled runs a build with the sandbox off: on the host,
// in the real build directory, creating its output at its real path.
func TestRunner_Run_Disabled(t *testing.T) {
	r := newRunner(t, &sandbox.Options{Disabled: true})
	realStore := filepath.Join(t.TempDir(), "store")
	// The build user must reach the store and its build directory.
	os.Chmod(filepath.Dir(filepath.Dir(realStore)), 0o755)
	if err := os.Mkdir(realStore, 0o1777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(realStore, 0o1777)
	os.Chmod(filepath.Dir(realStore), 0o755)
	out := realStore + "/0i3n5f6y8sd0mj1v7aic9bqdrr6p8vy1-test"
	bb := filepath.Join(realStore, busyboxBase, "bin")
	if err := os.MkdirAll(bb, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, "/bin/busybox", filepath.Join(bb, "busybox"), 0o555)

	script := `mkdir $out; id -u > $out/uid; echo "$NIX_BUILD_TOP $TMPDIR $PWD $HOME $NIX_STORE" > $out/env; pwd > $out/pwd`
	if os.Getuid() == 0 {
		// The builder runs as a pool uid, whose leftovers Run kills (as
		// the caller, it could not tell them from the caller's own).
		script += "; sleep 1000 &"
	}
	spec := newSpec(t, script)
	spec.StoreDir = realStore
	spec.Builder = filepath.Join(bb, "busybox")
	spec.Inputs = map[string]string{realStore + "/" + busyboxBase: filepath.Join(realStore, busyboxBase)}
	spec.Env["out"] = out
	spec.Outputs = []string{out}
	spec.KeepBuildDir = true
	os.Chmod(spec.TempDir, 0o755)
	_, res := runBuilderWith(t, r, spec)
	defer os.RemoveAll(res.BuildDir)

	if _, err := os.Lstat(out); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("output still at its real path: %v", err)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(spec.OutputDir, filepath.Base(out), name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got, want := read("env"), res.BuildDir+" "+res.BuildDir+" "+res.BuildDir+" /homeless-shelter "+realStore+"\n"; got != want {
		t.Errorf("env = %q, want %q", got, want)
	}
	if got, want := read("pwd"), res.BuildDir+"\n"; got != want {
		t.Errorf("pwd = %q, want %q", got, want)
	}
	if got, want := read("uid"), strconv.Itoa(res.UID)+"\n"; got != want {
		t.Errorf("uid = %q, want %q", got, want)
	}
}

// TestRunner_Run_SandboxPathInDev binds a host file into the minimal /dev,
// whose directory the sandbox path then creates first.
func TestRunner_Run_SandboxPathInDev(t *testing.T) {
	src := filepath.Join(t.TempDir(), "dev-like")
	if err := os.WriteFile(src, []byte("dev-like\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Dir(src), 0o755)
	spec := newSpec(t, "mkdir $out; cat /dev/extra/thing > $out/r; ls /dev >> $out/r")
	spec.SandboxPaths = []sandbox.BindPath{{Target: "/dev/extra/thing", Source: src}}
	runBuilder(t, spec)
	want := "dev-like\nextra\nfd\nfull\nkvm\nnull\nptmx\npts\nrandom\nshm\nstderr\nstdin\nstdout\ntty\nurandom\nzero\n"
	if _, err := os.Stat("/dev/kvm"); err != nil {
		want = strings.Replace(want, "kvm\n", "", 1)
	}
	if got := readOutput(t, spec, "r"); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestRunner_Run_Personality checks what uname tells a builder: the
// 32-bit machine for i686-linux, and a 2.6 kernel with
// impersonate-linux-26 (for x86_64-linux and i686-linux only), as in Nix.
func TestRunner_Run_Personality(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skipf("the i686 personality is for x86_64 hosts; this is %s", runtime.GOARCH)
	}
	var host unix.Utsname
	if err := unix.Uname(&host); err != nil {
		t.Fatal(err)
	}
	hostRelease := unix.ByteSliceToString(host.Release[:])
	for _, tc := range []struct {
		system      string
		impersonate bool
		machine     string
		release     string // a prefix
	}{
		{"x86_64-linux", false, "x86_64", hostRelease},
		{"i686-linux", false, "i686", hostRelease},
		{"x86_64-linux", true, "x86_64", "2.6."},
		{"i686-linux", true, "i686", "2.6."},
		// Nix impersonates 2.6 only for the two x86 systems.
		{"builtin", true, "x86_64", hostRelease},
	} {
		t.Run(fmt.Sprintf("%s/impersonate=%v", tc.system, tc.impersonate), func(t *testing.T) {
			r := newRunner(t, &sandbox.Options{KVM: true, ImpersonateLinux26: tc.impersonate})
			spec := newSpec(t, "mkdir $out; uname -m > $out/m; uname -r > $out/r")
			spec.System = tc.system
			runBuilderWith(t, r, spec)
			if got := strings.TrimSpace(readOutput(t, spec, "m")); got != tc.machine {
				t.Errorf("uname -m = %q, want %q", got, tc.machine)
			}
			if got := strings.TrimSpace(readOutput(t, spec, "r")); !strings.HasPrefix(got, tc.release) {
				t.Errorf("uname -r = %q, want it to start with %q", got, tc.release)
			}
		})
	}
}
