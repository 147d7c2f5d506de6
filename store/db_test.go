package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/storetest"
)

// addTexts adds text paths name0..name(n-1), each referring to the previous.
func addChain(t *testing.T, st *store.Store, n int) []store.Path {
	t.Helper()
	var out []store.Path
	for i := 0; i < n; i++ {
		var refs []store.Path
		if i > 0 {
			refs = []store.Path{out[i-1]}
		}
		p, err := st.AddText(context.Background(), fmt.Sprintf("chain-%d", i), []byte(fmt.Sprintf("node %d refers to %v", i, refs)), refs)
		if err != nil {
			t.Fatalf("AddText(chain-%d) = %v", i, err)
		}
		out = append(out, p)
	}
	return out
}

func TestStore_Register_ClosureInvariant(t *testing.T) {
	st := storetest.NewStore(t, nil)
	ctx := context.Background()
	missing := store.Path("/nix/store/00000000000000000000000000000000-missing")

	// A reference to an invalid path is refused and nothing is registered.
	if p, err := st.AddText(ctx, "dangling", []byte("x"), []store.Path{missing}); !errors.Is(err, store.ErrNotValid) {
		t.Fatalf("AddText with an invalid reference = %s, %v; want ErrNotValid", p, err)
	}
	if all, _ := st.AllValid(); len(all) != 0 {
		t.Fatalf("AllValid() = %v after a refused registration, want none", all)
	}

	// References inside the same set are fine, in any order.
	dir := t.TempDir()
	var infos []*store.PathInfo
	for _, name := range []string{"a", "b"} {
		f := filepath.Join(dir, name)
		os.WriteFile(f, []byte(name), 0o444)
		sr, err := store.ScanPath(f, nil)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := st.Dir.MakeFixedOutputPath(name, true, sr.NARHash, nil, false)
		os.Rename(f, st.RealPath(p))
		infos = append(infos, &store.PathInfo{Path: p, NARHash: sr.NARHash, NARSize: sr.NARSize, RegistrationTime: time.Now()})
	}
	infos[0].References = []store.Path{infos[1].Path}
	infos[1].References = []store.Path{infos[0].Path, infos[1].Path}
	if err := st.Register(infos); err != nil {
		t.Fatalf("Register(cycle within the set) = %v", err)
	}
	refs, err := st.Referrers(infos[0].Path)
	if err != nil || len(refs) != 1 || refs[0] != infos[1].Path {
		t.Errorf("Referrers(a) = %v, %v; want [b]", refs, err)
	}
}

func TestStore_Delete_RefusesWhileReferenced(t *testing.T) {
	state := t.TempDir()
	st, err := store.Open(context.Background(), state, nil)
	if err != nil {
		t.Fatal(err)
	}
	chain := addChain(t, st, 3)
	if err := st.Delete(chain[:1]); !errors.Is(err, store.ErrHasReferrers) {
		t.Errorf("Delete(chain-0) = %v, want ErrHasReferrers", err)
	}
	if err := st.Delete(chain[1:]); err != nil {
		t.Errorf("Delete(chain-1, chain-2) = %v, want nil", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// Across close and reopen: what was deleted stays deleted, the rest
	// stays valid with consistent referrers.
	st = storetest.OpenStore(t, state, nil)
	for i, want := range []bool{true, false, false} {
		if ok, err := st.IsValid(chain[i]); err != nil || ok != want {
			t.Errorf("IsValid(chain-%d) = %v, %v; want %v", i, ok, err, want)
		}
	}
	if _, err := os.Lstat(st.RealPath(chain[1])); !os.IsNotExist(err) {
		t.Errorf("contents of deleted chain-1 still exist: %v", err)
	}
	if refs, err := st.Referrers(chain[0]); err != nil || len(refs) != 0 {
		t.Errorf("Referrers(chain-0) = %v, %v; want none", refs, err)
	}
	if err := st.Delete(chain[:1]); err != nil {
		t.Errorf("Delete(chain-0) once unreferenced = %v", err)
	}
}

func TestStore_Closure(t *testing.T) {
	st := storetest.NewStore(t, nil)
	chain := addChain(t, st, 5)
	got, err := st.Closure(chain[3:4])
	if err != nil {
		t.Fatal(err)
	}
	want := store.NewPathSet(chain[:4]...).Sorted()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Closure(chain-3) = %v, want %v", got, want)
	}
	if _, err := st.Closure([]store.Path{"/nix/store/00000000000000000000000000000000-x"}); !errors.Is(err, store.ErrNotValid) {
		t.Errorf("Closure(invalid) = %v, want ErrNotValid", err)
	}
}

func TestStore_Open_WaitsForOtherHolder(t *testing.T) {
	state := t.TempDir()
	first, err := store.Open(context.Background(), state, nil)
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan int, 1)
	opened := make(chan *store.Store, 1)
	go func() {
		st, err := store.Open(context.Background(), state, &store.Options{OnWait: func(pid int) { waited <- pid }})
		if err != nil {
			t.Errorf("second Open = %v", err)
		}
		opened <- st
	}()
	select {
	case pid := <-waited:
		if pid != os.Getpid() {
			t.Errorf("OnWait pid = %d, want %d", pid, os.Getpid())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("second Open did not report waiting")
	}
	select {
	case <-opened:
		t.Fatal("second Open succeeded while the first held the store")
	case <-time.After(100 * time.Millisecond):
	}
	first.Close()
	st := <-opened
	if st != nil {
		st.Close()
	}

	// A cancelled wait returns the context's error.
	first, _ = store.Open(context.Background(), state, nil)
	defer first.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := store.Open(ctx, state, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Open with an expiring context = %v, want DeadlineExceeded", err)
	}
}

func TestStore_Open_OtherStoreDir(t *testing.T) {
	state := t.TempDir()
	st, err := store.Open(context.Background(), state, nil)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if st, err := store.Open(context.Background(), state, &store.Options{Dir: "/other/store"}); err == nil {
		st.Close()
		t.Fatal("Open with another store dir = nil error, want one")
	}
}

func TestStore_Open_RemovesLeftovers(t *testing.T) {
	state := t.TempDir()
	st, err := store.Open(context.Background(), state, nil)
	if err != nil {
		t.Fatal(err)
	}
	tmp, err := st.MkdirTemp("build-")
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	st = storetest.OpenStore(t, state, nil)
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Errorf("temporary %s survived reopening: %v", tmp, err)
	}
}

// TestStore_Register_Concurrent: registrations arriving together share
// commits, and one that breaks the closure invariant is refused alone.
func TestStore_Register_Concurrent(t *testing.T) {
	st := storetest.NewStore(t, nil)
	missing := store.Path("/nix/store/00000000000000000000000000000000-missing")
	errs := make(chan error, 40)
	for i := 0; i < 40; i++ {
		go func(i int) {
			var refs []store.Path
			if i == 17 {
				refs = []store.Path{missing}
			}
			_, err := st.AddText(context.Background(), fmt.Sprintf("concurrent-%d", i), []byte(fmt.Sprint(i)), refs)
			errs <- err
		}(i)
	}
	refused := 0
	for i := 0; i < 40; i++ {
		if err := <-errs; err != nil {
			if !errors.Is(err, store.ErrNotValid) {
				t.Errorf("AddText = %v", err)
			}
			refused++
		}
	}
	all, _ := st.AllValid()
	if refused != 1 || len(all) != 39 {
		t.Errorf("%d refused and %d valid, want 1 and 39", refused, len(all))
	}
}
