package store_test

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
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
