package realise_test

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/storefs/storefs/realise"
	"github.com/storefs/storefs/sandbox"
	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/storetest"
)

// heapPeak samples the heap in use until stop is called and returns the
// largest value seen, in bytes. The worker registers outputs in this
// process, so this is the memory that scanning and registering cost
// (builders run in processes of their own).
func heapPeak() (stop func() uint64) {
	runtime.GC()
	var mu sync.Mutex
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			mu.Lock()
			peak = max(peak, ms.HeapInuse)
			mu.Unlock()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak
	}
}

// newQuietEnv is newEnv without an event subscriber (which keeps every
// event, so a log flood would fill the test's memory, not the worker's),
// with its state directory in stateDir ("" for a temporary one).
func newQuietEnv(t testing.TB, stateDir string, opts realise.Options) *env {
	t.Helper()
	var st *store.Store
	if stateDir == "" {
		st = storetest.NewStore(t, nil)
	} else {
		st = storetest.OpenStore(t, stateDir, nil)
	}
	if err := os.Chmod(st.StateDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	storetest.AddBusybox(t, st)
	// A uid range of these tests' own, shared by all of them: their
	// builds run long, and other tests look for leftover processes of
	// the default range's uids (start-id + k·65536).
	runner, err := sandbox.New(&sandbox.Options{
		UIDLockDir: filepath.Join(os.TempDir(), "storefs-limits-test-uids"),
		StartID:    sandbox.DefaultStartID + 256*65536 + 4096,
		IDCount:    16 * 65536,
	})
	if err != nil {
		t.Fatalf("sandbox.New = %v", err)
	}
	t.Cleanup(func() { runner.Close() })
	opts.Sandbox, opts.CancelOrphans = true, true
	if opts.LogDir == "" {
		opts.LogDir = filepath.Join(st.StateDir(), "log")
	}
	w, err := realise.New(st, runner, &opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return &env{st: st, w: w, logDir: opts.LogDir}
}

// checkRefused fails unless drv's output is invalid, absent from the
// backing store, and the temporary area is empty.
func checkRefused(t *testing.T, e *env, drv store.Path) {
	t.Helper()
	out := outputOf(t, e.st, drv)
	if ok, _ := e.st.IsValid(out); ok {
		t.Errorf("%s is valid", out)
	}
	if _, err := os.Lstat(e.st.RealPath(out)); err == nil {
		t.Errorf("%s has contents in the backing store", out)
	}
	if entries, _ := os.ReadDir(filepath.Join(e.st.RealDir(), ".tmp")); len(entries) != 0 {
		t.Errorf("the temporary area holds %v", entries)
	}
}

// manyFiles is how many files TestWorker_ManySmallFiles has a builder
// make: a million, or STOREFS_TEST_MANY_FILES.
func manyFiles(t *testing.T) int {
	if s := os.Getenv("STOREFS_TEST_MANY_FILES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1000 {
			t.Fatalf("STOREFS_TEST_MANY_FILES=%q: want a number of at least 1000", s)
		}
		return n
	}
	return 1000000
}

// TestWorker_ManySmallFiles: a builder that makes a million small files
// (a thousand directories of a thousand) gets its output canonicalised,
// scanned and registered, while the worker's heap stays bounded: neither
// Canonicalise nor the NAR dump holds more than one directory's entries.
// A single directory of 100000 entries costs memory in proportion to
// its entries, and that stays within bounds too.
func TestWorker_ManySmallFiles(t *testing.T) {
	n := manyFiles(t)
	cases := []struct {
		name       string
		dirs, each int
		limit      uint64 // heap in use, bytes
	}{
		{"ThousandDirectories", n / 1000, 1000, 64 << 20},
		{"OneWideDirectory", 1, 100000, 256 << 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newQuietEnv(t, "", realise.Options{})
			script := "mkdir $out; cd $out; for d in $(seq " + strconv.Itoa(tc.dirs) + "); do mkdir $d; (cd $d && seq " + strconv.Itoa(tc.each) + " | xargs touch); done"
			drv := addDrv(t, e.st, "many-files", script)
			stop := heapPeak()
			start := time.Now()
			rep := e.realise(t, realise.Request{Targets: targetsOf(drv)})
			peak := stop()
			if res := rep.Results[0]; res.Status != realise.Built {
				t.Fatalf("status %v: %v", res.Status, res.Err)
			}
			info, err := e.st.PathInfo(outputOf(t, e.st, drv))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d files in %d directories: built and registered in %v, NAR %d bytes, peak heap in use %d MiB", tc.dirs*tc.each, tc.dirs, time.Since(start).Round(time.Millisecond), info.NARSize, peak>>20)
			if peak > tc.limit {
				t.Errorf("peak heap in use %d MiB, want at most %d MiB", peak>>20, tc.limit>>20)
			}
		})
	}
}

// TestWorker_DeepOutput: directories nested as deep as a NAR allows
// register; deeper ones, and deeper still than PATH_MAX allows to
// name, are refused (OutputRejected) with nothing registered and nothing
// left in the temporary area, in bounded memory.
func TestWorker_DeepOutput(t *testing.T) {
	cases := []struct {
		name   string
		depth  int
		status realise.Status
		msg    string
	}{
		{"AsDeepAsAllowed", 1000, realise.Built, ""},
		{"DeeperThanNAR", 1100, realise.OutputRejected, "nested deeper than 1024"},
		{"DeeperThanPathMax", 5000, realise.OutputRejected, "file name too long"},
	}
	e := newQuietEnv(t, "", realise.Options{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Chains of at most 1000 directories, moved each into the
			// bottom of the one before: no path the builder names is
			// longer than PATH_MAX, though the tree is deeper.
			chains := (tc.depth + 999) / 1000
			script := "mkdir $out; cd $out; p=$(printf 'd/%.0s' $(seq " + strconv.Itoa(tc.depth/chains) + "))\n" +
				"for i in $(seq " + strconv.Itoa(chains) + "); do mkdir -p c$i/$p; done; echo deep > c" + strconv.Itoa(chains) + "/$p/f\n" +
				"for i in $(seq " + strconv.Itoa(chains-1) + " -1 1); do mv c$((i+1)) c$i/$p; done"
			drv := addDrv(t, e.st, "deep-"+strconv.Itoa(tc.depth), script)
			stop := heapPeak()
			rep := e.realise(t, realise.Request{Targets: targetsOf(drv)})
			peak := stop()
			res := rep.Results[0]
			if res.Status != tc.status {
				t.Fatalf("status %v (%v), want %v", res.Status, res.Err, tc.status)
			}
			if tc.msg != "" {
				if res.Err == nil || !strings.Contains(res.Err.Msg, tc.msg) {
					t.Errorf("error %v, want it to say %q", res.Err, tc.msg)
				}
				checkRefused(t, e, drv)
			}
			if peak > 64<<20 {
				t.Errorf("peak heap in use %d MiB", peak>>20)
			}
		})
	}
}

// TestWorker_LogFlood: builders that flood their log are stopped by
// max-build-log-size whether they write lines or one endless line of NUL
// bytes, and without a limit a flood of lines costs the worker bounded
// memory (the whole log goes compressed to disk, only the tail is kept).
func TestWorker_LogFlood(t *testing.T) {
	cases := []struct {
		name   string
		opts   realise.Options
		script string
		status realise.Status
	}{
		{"LimitNoNewlines", realise.Options{MaxLogSize: 1 << 20}, "cat /dev/zero", realise.LogLimitExceeded},
		{"LimitLongLines", realise.Options{MaxLogSize: 1 << 20}, "while true; do head -c 100000 /dev/zero | tr '\\0' x; done", realise.LogLimitExceeded},
		{"NoLimitLines", realise.Options{Timeout: 5 * time.Second}, "yes 'a line of log output'", realise.TimedOut},
		{"NoLimitNoNewlines", realise.Options{Timeout: 5 * time.Second}, "cat /dev/zero", realise.TimedOut},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newQuietEnv(t, "", tc.opts)
			drv := addDrv(t, e.st, "flood", tc.script)
			stop := heapPeak()
			start := time.Now()
			rep := e.realise(t, realise.Request{Targets: targetsOf(drv)})
			peak := stop()
			res := rep.Results[0]
			if res.Status != tc.status {
				t.Fatalf("status %v (%v), want %v", res.Status, res.Err, tc.status)
			}
			if d := time.Since(start); d > 30*time.Second {
				t.Errorf("the flood was stopped after %v", d)
			}
			logSize := int64(-1)
			if fi, err := os.Stat(realise.LogPath(e.logDir, drv)); err == nil {
				logSize = fi.Size()
			}
			t.Logf("%s: stopped after %v; compressed log %d bytes; peak heap in use %d MiB", tc.name, time.Since(start).Round(time.Millisecond), logSize, peak>>20)
			if peak > 64<<20 {
				t.Errorf("peak heap in use %d MiB, want at most 64 MiB", peak>>20)
			}
			if len(res.Err.Msg) > 1<<20 {
				t.Errorf("the error holds %d bytes of log", len(res.Err.Msg))
			}
			checkRefused(t, e, drv)
		})
	}
}

// TestWorker_DiskFull: with the state directory on a small file system,
// a builder that writes more than it holds fails (ENOSPC inside the
// sandbox): nothing is registered, the temporary area is emptied, the
// space comes back, and a small build succeeds afterwards.
func TestWorker_DiskFull(t *testing.T) {
	fsDir := t.TempDir()
	if err := unix.Mount("tmpfs", fsDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=32m,mode=0755"); err != nil {
		if errors.Is(err, unix.EPERM) {
			t.Skipf("mounting a tmpfs needs CAP_SYS_ADMIN: %v", err)
		}
		t.Fatalf("mount tmpfs on %s: %v", fsDir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(fsDir, unix.MNT_DETACH); err != nil {
			t.Errorf("umount %s: %v", fsDir, err)
		}
	})
	if err := os.Chmod(filepath.Dir(fsDir), 0o755); err != nil {
		t.Fatal(err)
	}
	e := newQuietEnv(t, filepath.Join(fsDir, "state"), realise.Options{})
	var before unix.Statfs_t
	if err := unix.Statfs(fsDir, &before); err != nil {
		t.Fatal(err)
	}

	drv := addDrv(t, e.st, "fill-disk", "mkdir $out; dd if=/dev/zero of=$out/big bs=1M count=64")
	rep := e.realise(t, realise.Request{Targets: targetsOf(drv)})
	res := rep.Results[0]
	if res.Status.Success() {
		t.Fatalf("a build writing 64 MiB into 32 MiB succeeded")
	}
	if res.Err == nil || !strings.Contains(res.Err.Msg, string(drv)) {
		t.Errorf("error %v, want it to name %s", res.Err, drv)
	}
	if tail := strings.Join(res.Err.LogTail, "\n"); !strings.Contains(tail, "No space left on device") {
		t.Errorf("log tail %q, want it to say the disk is full", tail)
	}
	checkRefused(t, e, drv)
	var after unix.Statfs_t
	if err := unix.Statfs(fsDir, &after); err != nil {
		t.Fatal(err)
	}
	// The log of the failed build stays; the output does not.
	if lost := int64(before.Bfree-after.Bfree) * after.Bsize; lost > 1<<20 {
		t.Errorf("%d bytes of the file system are still used after the failure", lost)
	}

	small := addDrv(t, e.st, "fits", "echo fits > $out")
	if res := e.realise(t, realise.Request{Targets: targetsOf(small)}).Results[0]; res.Status != realise.Built {
		t.Errorf("a small build after the full disk: %v %v", res.Status, res.Err)
	}
}

// TestWorker_MinFree: below min-free, the worker collects garbage before a
// build (up to max-free) and says so; what the build needs survives.
func TestWorker_MinFree(t *testing.T) {
	// No disk has 2^62 bytes free: every build starts with a collection.
	e := newEnv(t, &realise.Options{MinFree: 1 << 62, MaxFree: 1<<63 - 1})
	first := addDrv(t, e.st, "first", "echo first > $out")
	e.wantBuilt(t, first)
	firstOut := outputOf(t, e.st, first)
	second := addDrv(t, e.st, "second", "echo second > $out")
	e.wantBuilt(t, second)
	if ok, _ := e.st.IsValid(firstOut); ok {
		t.Errorf("%s, garbage when the second build started, survived the automatic collection", firstOut)
	}
	if ok, _ := e.st.IsValid(outputOf(t, e.st, second)); !ok {
		t.Errorf("the second build's output is not valid")
	}
	found := false
	for _, n := range e.notes() {
		found = found || strings.HasPrefix(n, "note: collected ")
	}
	if !found {
		t.Errorf("no note of the collection among %q", e.notes())
	}
}
