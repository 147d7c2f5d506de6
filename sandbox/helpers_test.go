package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/storefs/storefs/sandbox"
)

const (
	storeDir = "/nix/store"
	// busyboxBase is the fixtures' store path of busybox/bin/busybox.
	busyboxBase = "71fc7s32zl20dc955bhghy5dvalm7ndz-busybox"
	busybox     = storeDir + "/" + busyboxBase + "/bin/busybox"
	// outPath is the output of the builds that do not come from a fixture.
	outPath = storeDir + "/0i3n5f6y8sd0mj1v7aic9bqdrr6p8vy1-test"
)

// Test builds use their own part of the uid range, so that they never
// meet a real storefs on the machine, and a lock directory shared by all
// test processes, so that concurrent test runs never share a uid.
const (
	// Beyond the default range, which other packages' tests use.
	testStartID = sandbox.DefaultStartID + sandbox.DefaultIDCount
	testIDCount = 64 * 65536
)

func TestMain(m *testing.M) {
	sandbox.RunChildIfRequested()
	os.Exit(m.Run())
}

func uidLockDir() string { return filepath.Join(os.TempDir(), "storefs-sandbox-test-uids") }

// newRunner returns a Runner for tests; opts may set Disabled, KVM and
// ImpersonateLinux26. It
// skips the test when the kernel has no user namespaces.
func newRunner(t testing.TB, opts *sandbox.Options) *sandbox.Runner {
	t.Helper()
	o := sandbox.Options{UIDLockDir: uidLockDir(), StartID: testStartID, IDCount: testIDCount, KVM: true}
	if opts != nil {
		o.Disabled, o.KVM, o.ImpersonateLinux26 = opts.Disabled, opts.KVM, opts.ImpersonateLinux26
	}
	r, err := sandbox.New(&o)
	if errors.Is(err, sandbox.ErrNoNamespaces) {
		t.Skipf("kernel feature missing: user namespaces: %v", err)
	}
	if err != nil {
		t.Fatalf("New() = %v, want nil", err)
	}
	return r
}

// newBackingStore returns a fake backing store holding busybox at the
// fixtures' store path, and the Inputs that make it visible.
func newBackingStore(t testing.TB) (dir string, inputs map[string]string) {
	t.Helper()
	dir = t.TempDir()
	bin := filepath.Join(dir, busyboxBase, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link("/bin/busybox", filepath.Join(bin, "busybox")); err != nil {
		copyFile(t, "/bin/busybox", filepath.Join(bin, "busybox"), 0o555)
	}
	return dir, map[string]string{storeDir + "/" + busyboxBase: filepath.Join(dir, busyboxBase)}
}

func copyFile(t testing.TB, from, to string, perm os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, perm); err != nil {
		t.Fatal(err)
	}
}

// newSpec returns a Spec that runs script with busybox sh -e, with one
// output, outPath, and fresh temporary and output directories.
func newSpec(t testing.TB, script string) *sandbox.Spec {
	t.Helper()
	_, inputs := newBackingStore(t)
	return &sandbox.Spec{
		StoreDir:  storeDir,
		TempDir:   t.TempDir(),
		Name:      "test",
		Builder:   busybox,
		Args:      []string{"sh", "-e", "-c", script},
		Env:       map[string]string{"out": outPath, "name": "test"},
		Inputs:    inputs,
		Outputs:   []string{outPath},
		OutputDir: t.TempDir(),
		Cores:     1,
	}
}

// runBuilder runs spec with a default Runner and fails the test unless Run
// succeeded; it returns the build log and the Result.
func runBuilder(t testing.TB, spec *sandbox.Spec) (string, *sandbox.Result) {
	t.Helper()
	return runBuilderWith(t, newRunner(t, nil), spec)
}

func runBuilderWith(t testing.TB, r *sandbox.Runner, spec *sandbox.Spec) (string, *sandbox.Result) {
	t.Helper()
	log, res, err := tryBuilder(t, r, spec)
	if err != nil {
		t.Fatalf("Run() = %v, want nil; log:\n%s", err, log)
	}
	return log, res
}

// tryBuilder runs spec and checks that Run left nothing behind, whatever
// it returned.
func tryBuilder(t testing.TB, r *sandbox.Runner, spec *sandbox.Spec) (string, *sandbox.Result, error) {
	t.Helper()
	var log syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := r.Run(ctx, spec, &log)
	checkLeftovers(t, spec, res)
	return log.String(), res, err
}

// checkLeftovers checks that nothing Run made is left in spec.TempDir but
// a kept build directory, that nothing is mounted below it, and that no
// process runs as the build's uid.
func checkLeftovers(t testing.TB, spec *sandbox.Spec, res *sandbox.Result) {
	t.Helper()
	ents, err := os.ReadDir(spec.TempDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		p := filepath.Join(spec.TempDir, e.Name())
		if res != nil && p == res.BuildDir {
			continue
		}
		t.Errorf("Run left %s behind", p)
	}
	if mps := mountsBelow(t, spec.TempDir); len(mps) > 0 {
		t.Errorf("Run left mounts: %v", mps)
	}
	if res != nil && res.UID != os.Getuid() {
		if pids := processesOf(t, res.UID); len(pids) > 0 {
			t.Errorf("processes of uid %d still running: %v", res.UID, pids)
		}
	}
}

// mountsBelow returns the mount points of our namespace at or below dir.
func mountsBelow(t testing.TB, dir string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

// processesOf returns the live (not zombie) processes whose real uid is
// uid.
func processesOf(t testing.TB, uid int) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	want := "\nUid:\t" + strconv.Itoa(uid) + "\t"
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		status, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil || !strings.Contains(string(status), want) || strings.Contains(string(status), "\nState:\tZ") {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// readOutput returns the file name of the output moved to spec.OutputDir.
func readOutput(t testing.TB, spec *sandbox.Spec, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(spec.OutputDir, filepath.Base(outPath), name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// syncBuffer is a bytes.Buffer safe for the pump goroutine and a test
// reading it while the build runs; notify, if set, sees every write.
type syncBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	notify func(string)
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	n, _ := b.buf.Write(p)
	s := b.buf.String()
	notify := b.notify
	b.mu.Unlock()
	if notify != nil {
		notify(s)
	}
	return n, nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var _ io.Writer = (*syncBuffer)(nil)
