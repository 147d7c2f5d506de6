package realise_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/storefs/storefs/realise"
	"github.com/storefs/storefs/sandbox"
	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/storetest"
)

func TestMain(m *testing.M) {
	sandbox.RunChildIfRequested()
	os.Exit(m.Run())
}

// env is a store with busybox and a worker over it.
type env struct {
	st     *store.Store
	w      *realise.Worker
	logDir string

	mu     sync.Mutex
	events []realise.Event
}

// newEnv opens a /nix/store store in a temporary state directory (the
// machine's /nix/store is never touched: the backing directory is under
// the test's temporary directory), adds busybox, and starts a worker with
// real sandboxing.
func newEnv(t testing.TB, opts *realise.Options) *env {
	t.Helper()
	st := newTestStore(t)
	storetest.AddBusybox(t, st)
	return startWorker(t, st, opts)
}

// newTestStore is an empty store whose state directory, like
// /nix/var/storefs, the sandbox's unprivileged helper can traverse
// (t.TempDir makes it 0700).
func newTestStore(t testing.TB) *store.Store {
	t.Helper()
	st := storetest.NewStore(t, nil)
	if err := os.Chmod(st.StateDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	return st
}

// startWorker starts a worker over st, recording its events.
func startWorker(t testing.TB, st *store.Store, opts *realise.Options) *env {
	t.Helper()
	_, kvmErr := os.Stat("/dev/kvm")
	// Nix 2.8 has the kvm feature, and binds /dev/kvm, where it exists.
	runner, err := sandbox.New(&sandbox.Options{KVM: kvmErr == nil})
	if err != nil {
		t.Fatalf("sandbox.New = %v", err)
	}
	t.Cleanup(func() { runner.Close() })
	o := realise.Options{}
	if opts != nil {
		o = *opts
	}
	o.Sandbox = true
	o.CancelOrphans = true
	if o.LogDir == "" {
		o.LogDir = filepath.Join(st.StateDir(), "log")
	}
	if o.SystemFeatures == nil {
		o.SystemFeatures = []string{"benchmark", "big-parallel", "nixos-test"}
		if kvmErr == nil {
			o.SystemFeatures = append(o.SystemFeatures, "kvm")
		}
	}
	w, err := realise.New(st, runner, &o)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{st: st, w: w, logDir: o.LogDir}
	unsub := w.Subscribe(func(ev realise.Event) {
		e.mu.Lock()
		e.events = append(e.events, ev)
		e.mu.Unlock()
	})
	// Cleanups run last-registered first: the worker closes before the
	// store is verified and closed.
	t.Cleanup(func() {
		unsub()
		w.Close()
	})
	return e
}

// realise realises targets and fails the test if the request itself
// errs.
func (e *env) realise(t testing.TB, req realise.Request) *realise.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := e.w.Realise(ctx, req)
	if err != nil {
		t.Fatalf("Realise(%v) = %v", req.Targets, err)
	}
	return rep
}

// failures returns the messages of the failed builds seen in events.
func (e *env) failures() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ev := range e.events {
		if ev.Kind == realise.BuildFinished && ev.Err != nil {
			out = append(out, ev.Err.Msg)
		}
	}
	return out
}

// builds counts the BuildStarted events per derivation.
func (e *env) builds() map[store.Path]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[store.Path]int{}
	for _, ev := range e.events {
		if ev.Kind == realise.BuildStarted {
			out[ev.Drv]++
		}
	}
	return out
}

// fixtureCase is expected/<case>.json: what Nix 2.8 did.
type fixtureCase struct {
	Case    string            `json:"case"`
	Expect  string            `json:"expect"`
	DrvPath string            `json:"drvPath"`
	Outputs map[string]string `json:"outputs"`
	Realise struct {
		ExitCode int `json:"exitCode"`
	} `json:"realise"`
	BuildLog        string `json:"buildLog"`
	CreatedPathInfo []struct {
		Path       string   `json:"path"`
		NarHash    string   `json:"narHash"`
		NarSize    uint64   `json:"narSize"`
		References []string `json:"references"`
		CA         string   `json:"ca"`
		Deriver    string   `json:"deriver"`
	} `json:"createdPathInfo"`
	StorePathsCreated []struct {
		Path  string `json:"path"`
		State string `json:"state"`
	} `json:"storePathsCreated"`
	Failure struct {
		ErrorLines []string `json:"errorLines"`
	} `json:"failure"`
	Check *struct {
		ExitCode int    `json:"exitCode"`
		Stderr   string `json:"stderr"`
	} `json:"check"`
	Note string `json:"note"`
}

func loadCases(t *testing.T) []fixtureCase {
	t.Helper()
	dir := filepath.Join(storetest.FixturesDir(t), "expected")
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []fixtureCase
	for _, f := range files {
		base := filepath.Base(f)
		if base == "index.json" || base == "_meta.json" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var c fixtureCase
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		cases = append(cases, c)
	}
	if len(cases) < 20 {
		t.Fatalf("found %d fixture cases, want at least 20", len(cases))
	}
	return cases
}

// exitBitsOf is the part of a `nix-store --realise` exit code that
// realise reports: 0x60|bits, or 1 (no bits) for other errors.
func exitBitsOf(code int) realise.ExitBits {
	if code >= 0x60 {
		return realise.ExitBits(code &^ 0x60)
	}
	return 0
}

// mask replaces the real store root in our messages the way the fixtures
// mask Nix's: "<real-store-root>/nix/store/…".
func (e *env) mask(s string) string {
	return strings.ReplaceAll(s, e.st.RealDir(), "<real-store-root>/nix/store")
}

// TestRealise_Fixtures realises every case Nix 2.8 recorded and compares:
// output paths, NAR hashes, sizes and references of deterministic
// outputs, the exit status and the essential error lines.
func TestRealise_Fixtures(t *testing.T) {
	cases := loadCases(t)
	e := newEnv(t, &realise.Options{MaxJobs: 2})
	storetest.AddFixtureDerivations(t, e.st)
	_, hasKVM := os.Stat("/dev/kvm")
	for _, c := range cases {
		t.Run(c.Case, func(t *testing.T) {
			if c.Case == "large-incompressible" && testing.Short() {
				t.Skip("100 MB of pseudo-random output; skipped with -short")
			}
			before := len(e.failures())
			rep := e.realise(t, realise.Request{Targets: []realise.Target{{Path: store.Path(c.DrvPath)}}})
			res := rep.Results[0]
			if c.Realise.ExitCode == 0 {
				if !res.Status.Success() {
					t.Fatalf("status %v, want success; error: %v", res.Status, res.Err)
				}
				for name, want := range c.Outputs {
					if got := res.Outputs[name]; string(got) != want {
						t.Errorf("output %s = %s, want %s", name, got, want)
					}
				}
			} else {
				if res.Status.Success() {
					t.Fatalf("status %v, want a failure with exit code %d", res.Status, c.Realise.ExitCode)
				}
				if got, want := rep.Bits(), exitBitsOf(c.Realise.ExitCode); got != want {
					t.Errorf("exit bits = %d, want %d (exit code %d); error: %v", got, want, c.Realise.ExitCode, res.Err)
				}
				printed := append(e.failures()[before:], res.Err.Msg)
				for _, want := range c.Failure.ErrorLines {
					want = strings.TrimPrefix(want, "error: ")
					// The chroot's location is ours to choose.
					want, _, _ = strings.Cut(want, " at '<real-store-root>")
					found := false
					for _, msg := range printed {
						first, _, _ := strings.Cut(e.mask(msg), "\n")
						first = strings.TrimSuffix(first, ";")
						if strings.HasPrefix(first, want) {
							found = true
						}
					}
					if !found {
						t.Errorf("no error line %q among:\n%s", want, strings.Join(printed, "\n---\n"))
					}
				}
			}
			for _, want := range c.CreatedPathInfo {
				if c.Case == "nondeterministic" {
					continue
				}
				if c.Case == "sandbox-check" && hasKVM != nil {
					t.Logf("this machine has no /dev/kvm; Nix's sandbox had one, so %s differs", want.Path)
					continue
				}
				info, err := e.st.PathInfo(store.Path(want.Path))
				if err != nil {
					t.Errorf("PathInfo(%s) = %v", want.Path, err)
					continue
				}
				if got := info.NARHash.SRI(); got != want.NarHash {
					t.Errorf("%s: NAR hash %s, want %s", want.Path, got, want.NarHash)
				}
				if info.NARSize != want.NarSize {
					t.Errorf("%s: NAR size %d, want %d", want.Path, info.NARSize, want.NarSize)
				}
				var refs []string
				for _, r := range info.References {
					refs = append(refs, string(r))
				}
				sort.Strings(refs)
				if fmt.Sprint(refs) != fmt.Sprint(want.References) {
					t.Errorf("%s: references %v, want %v", want.Path, refs, want.References)
				}
				if info.CA != want.CA {
					t.Errorf("%s: ca %q, want %q", want.Path, info.CA, want.CA)
				}
				if string(info.Deriver) != want.Deriver {
					t.Errorf("%s: deriver %s, want %s", want.Path, info.Deriver, want.Deriver)
				}
			}
			for _, sp := range c.StorePathsCreated {
				if strings.HasSuffix(sp.Path, ".lock") {
					continue
				}
				ok, _ := e.st.IsValid(store.Path(sp.Path))
				if ok != (sp.State == "valid") {
					t.Errorf("IsValid(%s) = %v, Nix left it %s", sp.Path, ok, sp.State)
				}
			}
			if c.BuildLog != "" {
				got := readLog(t, e, store.Path(c.DrvPath))
				if got != c.BuildLog {
					t.Errorf("build log =\n%s\nwant\n%s", got, c.BuildLog)
				}
			}
			if c.Check != nil {
				rep := e.realise(t, realise.Request{Targets: []realise.Target{{Path: store.Path(c.DrvPath)}}, Mode: realise.Check})
				res := rep.Results[0]
				if got, want := rep.Bits(), exitBitsOf(c.Check.ExitCode); got != want || res.Status.Success() != (c.Check.ExitCode == 0) {
					t.Errorf("--check: status %v bits %d, want exit %d; error: %v", res.Status, got, c.Check.ExitCode, res.Err)
				}
				if c.Check.ExitCode != 0 {
					_, want, _ := strings.Cut(c.Check.Stderr, "error: ")
					want = strings.TrimSpace(want)
					if got := e.mask(res.Err.Msg); got != want {
						t.Errorf("--check error = %q, want %q", got, want)
					}
				}
			}
		})
	}
}

func readLog(t testing.TB, e *env, drv store.Path) string {
	t.Helper()
	b, err := realise.ReadLog(e.logDir, drv)
	if err != nil {
		t.Fatalf("ReadLog(%s) = %v", drv, err)
	}
	return string(b)
}
