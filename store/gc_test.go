package store_test

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/storetest"
)

// addGraph adds n text paths, each referring to up to three earlier ones
// (a DAG), and returns them in order.
func addGraph(t *testing.T, st *store.Store, n int) []store.Path {
	t.Helper()
	rng := rand.New(rand.NewSource(int64(n)))
	var ps []store.Path
	for i := 0; i < n; i++ {
		refs := store.NewPathSet()
		for j := 0; j < 3 && i > 0; j++ {
			refs.Add(ps[rng.Intn(i)])
		}
		p, err := st.AddText(context.Background(), fmt.Sprintf("node-%d", i), []byte(fmt.Sprintf("node %d %v", i, refs.Sorted())), refs.Sorted())
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	return ps
}

// TestStore_GC_KeepsClosureOfRoots: of a 200-node DAG, GC keeps exactly
// the closure of a direct root, an indirect root (a `result` link) and a
// temporary root, and deletes the rest, referrers first.
func TestStore_GC_KeepsClosureOfRoots(t *testing.T) {
	st := storetest.NewStore(t, nil)
	ps := addGraph(t, st, 200)
	// A direct root: a symlink in gcroots.
	os.MkdirAll(st.RootsDir(), 0o755)
	if err := os.Symlink(string(ps[50]), filepath.Join(st.RootsDir(), "direct")); err != nil {
		t.Fatal(err)
	}
	// An indirect root: ./result, registered with AddRoot.
	result := filepath.Join(t.TempDir(), "result")
	if err := st.AddRoot(result, ps[120]); err != nil {
		t.Fatal(err)
	}
	// A temporary root, held while GC runs.
	release := st.TempRoots.Add(ps[199])
	defer release()

	want, err := st.Closure([]store.Path{ps[50], ps[120], ps[199]})
	if err != nil {
		t.Fatal(err)
	}
	dry, err := st.GC(context.Background(), &store.GCOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(dry.Deleted) != 200-len(want) {
		t.Fatalf("dry run would delete %d, want %d", len(dry.Deleted), 200-len(want))
	}
	if all, _ := st.AllValid(); len(all) != 200 {
		t.Fatalf("dry run deleted something: %d valid", len(all))
	}
	refsBefore := map[store.Path][]store.Path{}
	for _, p := range ps {
		info, _ := st.PathInfo(p)
		refsBefore[p] = info.References
	}
	res, err := st.GC(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := st.AllValid()
	if fmt.Sprint(all) != fmt.Sprint(want) {
		t.Errorf("after GC %d valid paths, want the %d of the roots' closure", len(all), len(want))
	}
	if len(res.Deleted) != 200-len(want) || res.BytesFreed == 0 {
		t.Errorf("GC deleted %d paths freeing %d bytes", len(res.Deleted), res.BytesFreed)
	}
	// Referrers first: no deleted path refers to one deleted before it.
	deleted := map[store.Path]int{}
	for i, p := range res.Deleted {
		deleted[p] = i
	}
	for p, i := range deleted {
		for _, r := range refsBefore[p] {
			if j, gone := deleted[r]; gone && r != p && j < i {
				t.Errorf("%s was deleted before %s, which refers to it", r, p)
			}
		}
	}
	roots, err := st.Roots()
	if err != nil || len(roots) != 2 || roots[ps[120]][0] != result {
		t.Errorf("Roots() = %v, %v", roots, err)
	}
	// When the result link goes, its root goes too.
	os.Remove(result)
	if _, err := st.GC(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if ok, _ := st.IsValid(ps[120]); ok {
		t.Errorf("path of a removed indirect root survived GC")
	}
}

// TestStore_GC_MaxFreed stops once enough is freed, keeping the closure
// invariant.
func TestStore_GC_MaxFreed(t *testing.T) {
	st := storetest.NewStore(t, nil)
	addGraph(t, st, 100)
	res, err := st.GC(context.Background(), &store.GCOptions{MaxFreed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(res.Deleted); n == 0 || n >= 100 {
		t.Errorf("GC with max-freed deleted %d paths", n)
	}
}

// TestStore_Open_SweepsAfterCrash: leftovers in the backing directory of a
// store whose process died (a half-moved output, a stale lock file) are
// removed at the next Open; those of a cleanly closed store are not
// looked for.
func TestStore_Open_SweepsAfterCrash(t *testing.T) {
	state := t.TempDir()
	st, err := store.Open(context.Background(), state, nil)
	if err != nil {
		t.Fatal(err)
	}
	stray := st.RealPath("/nix/store/00000000000000000000000000000000-half-moved")
	os.Mkdir(stray, 0o755)
	lock := stray + ".lock"
	os.WriteFile(lock, nil, 0o600)
	// Simulate the process dying: the lock goes, the dirty marker stays.
	if err := st.DB.Close(); err != nil {
		t.Fatal(err)
	}
	dbDir := filepath.Join(state, "db")
	if _, err := os.Stat(filepath.Join(dbDir, "dirty")); err != nil {
		t.Fatalf("no dirty marker while open: %v", err)
	}
	// Release the store lock as the kernel would.
	os.Remove(filepath.Join(dbDir, "lock"))
	st2 := storetest.OpenStore(t, state, nil)
	_ = st2
	for _, p := range []string{stray, lock} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s survived reopening after a crash", p)
		}
	}
}

// TestStore_GC_RootsAddedDuringCollection: a path that becomes alive after
// the dead set is computed but before its batch goes survives, with its
// closure: a goal adding a temporary root and finding the path valid, or
// a path registered meanwhile that refers to it. The referrers-first
// order is kept (the cleanup verifies the closure invariant).
func TestStore_GC_RootsAddedDuringCollection(t *testing.T) {
	cases := []struct {
		name string
		// maxFreed > 0 makes batches of 16, so the hook runs several times.
		maxFreed uint64
		// batchNo is the batch during which the path becomes alive.
		batchNo int
		// byReferrer registers a new path referring to it, instead of
		// adding a temporary root.
		byReferrer bool
	}{
		{name: "TempRoot/FirstBatch", batchNo: 1},
		{name: "TempRoot/LaterBatch", maxFreed: 1 << 60, batchNo: 3},
		{name: "NewReferrer/FirstBatch", batchNo: 1, byReferrer: true},
		{name: "NewReferrer/LaterBatch", maxFreed: 1 << 60, batchNo: 3, byReferrer: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := storetest.NewStore(t, nil)
			ps := addGraph(t, st, 100)
			var alive store.Path
			calls := 0
			store.SetGCBatchHook(st, func(batch []store.Path) {
				if calls++; calls != tc.batchNo {
					return
				}
				// The last of the batch: the one with the largest closure
				// among what is left, referrers first.
				p := batch[len(batch)-1]
				if tc.byReferrer {
					n, err := st.AddText(context.Background(), "late-referrer", []byte(p), []store.Path{p})
					if err != nil {
						t.Errorf("AddText(referring to %s) = %v", p, err)
						return
					}
					alive = n
					return
				}
				t.Cleanup(st.TempRoots.Add(p))
				if ok, err := st.IsValid(p); !ok || err != nil {
					t.Errorf("IsValid(%s) = %v, %v before its batch went", p, ok, err)
				}
				alive = p
			})
			res, err := st.GC(context.Background(), &store.GCOptions{MaxFreed: tc.maxFreed})
			if err != nil {
				t.Fatalf("GC() = %v, want nil", err)
			}
			if alive == "" {
				t.Fatalf("the hook ran %d times, want at least %d", calls, tc.batchNo)
			}
			want, err := st.Closure([]store.Path{alive})
			if err != nil {
				t.Fatalf("Closure(%s) = %v: the path or part of its closure was deleted", alive, err)
			}
			all, _ := st.AllValid()
			if fmt.Sprint(all) != fmt.Sprint(want) {
				t.Errorf("after GC %d valid paths, want the %d of %s's closure", len(all), len(want), alive)
			}
			total := len(ps)
			if tc.byReferrer {
				total++ // the late referrer
			}
			if len(res.Deleted) != total-len(all) {
				t.Errorf("GC deleted %d paths, want %d", len(res.Deleted), total-len(all))
			}
		})
	}
}

// TestStore_GC_TempRootsRace: goroutines keep adding temporary roots to
// random paths while GC runs; every path found valid after its root was
// added is still valid when GC ends.
func TestStore_GC_TempRootsRace(t *testing.T) {
	st := storetest.NewStore(t, nil)
	ps := addGraph(t, st, 300)
	done := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var seen []store.Path
	var releases []func()
	defer func() {
		for _, r := range releases {
			r()
		}
	}()
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(seed))
			for {
				select {
				case <-done:
					return
				default:
				}
				p := ps[rng.Intn(len(ps))]
				release := st.TempRoots.Add(p)
				if ok, _ := st.IsValid(p); ok {
					mu.Lock()
					seen = append(seen, p)
					releases = append(releases, release)
					mu.Unlock()
				} else {
					release()
				}
			}
		}(int64(g))
	}
	// Batches of 16 give the goroutines many windows between batches.
	_, err := st.GC(context.Background(), &store.GCOptions{MaxFreed: 1 << 60})
	close(done)
	wg.Wait()
	if err != nil {
		t.Fatalf("GC() = %v, want nil", err)
	}
	for _, p := range seen {
		if ok, _ := st.IsValid(p); !ok {
			t.Errorf("%s was found valid under a temporary root, then collected", p)
		}
	}
}

// TestStore_GC_KeepOutputsAndDerivations: keep-derivations keeps the
// .drv of a live output (with the .drv's closure), keep-outputs keeps
// the valid outputs of a live .drv; without them each goes, as in Nix.
func TestStore_GC_KeepOutputsAndDerivations(t *testing.T) {
	const (
		drv = store.Path("/nix/store/ylidkad964ccmaay0qrd9zdywj84gw6f-trivial.drv")
		out = store.Path("/nix/store/8z3rv77c71xvmyyijyry9760g7fbghah-trivial")
	)
	st := storetest.NewStore(t, nil)
	bb := storetest.AddBusybox(t, st)
	storetest.AddFixtureDerivations(t, st)
	// The output Nix built from the trivial fixture, with its deriver.
	tmp, err := st.MkdirTemp("out-")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(tmp, "out")
	if err := os.WriteFile(file, []byte("hello from trivial\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := st.MoveIntoPlace(file, out); err != nil {
		t.Fatal(err)
	}
	os.Remove(tmp)
	narHash, err := store.ParseHash("sha256-sOlZFIELOBq8ukrgx6+uVD53hJdjBvoh0mpnzZl2e9E=")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Register([]*store.PathInfo{{Path: out, NARHash: narHash, NARSize: 136, Deriver: drv, Ultimate: true}}); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "result")
	for _, tc := range []struct {
		name  string
		root  store.Path
		opts  store.GCOptions
		kept  []store.Path
		freed []store.Path
	}{
		{"output root", out, store.GCOptions{}, []store.Path{out}, []store.Path{drv, bb}},
		{"output root, keep-derivations", out, store.GCOptions{KeepDerivations: true}, []store.Path{out, drv, bb}, nil},
		{"drv root", drv, store.GCOptions{}, []store.Path{drv, bb}, []store.Path{out}},
		{"drv root, keep-outputs", drv, store.GCOptions{KeepOutputs: true}, []store.Path{drv, bb, out}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(link)
			if err := st.AddRoot(link, tc.root); err != nil {
				t.Fatal(err)
			}
			opts := tc.opts
			opts.DryRun = true
			res, err := st.GC(context.Background(), &opts)
			if err != nil {
				t.Fatal(err)
			}
			deleted := map[store.Path]bool{}
			for _, p := range res.Deleted {
				deleted[p] = true
			}
			for _, p := range tc.kept {
				if deleted[p] {
					t.Errorf("%s would be deleted, want it kept", p)
				}
			}
			for _, p := range tc.freed {
				if !deleted[p] {
					t.Errorf("%s would be kept, want it deleted", p)
				}
			}
		})
	}
}
