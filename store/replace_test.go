package store_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/storetest"
)

// writeTree makes the directory dir holding files a and b.
func writeTree(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{"a": "one\n", "sub/b": "two\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// addTree adds a small directory tree and returns its path.
func addTree(t *testing.T, st *store.Store) store.Path {
	t.Helper()
	src := filepath.Join(t.TempDir(), "tree")
	writeTree(t, src)
	p, err := st.AddPath(context.Background(), src, "")
	if err != nil {
		t.Fatalf("AddPath(%s) = %v", src, err)
	}
	return p
}

// freshCopy makes a canonical copy of the tree in the store's temporary
// area, as a repair would, and returns it and its temporary directory.
func freshCopy(t *testing.T, st *store.Store) (tree, tmp string) {
	t.Helper()
	tmp, err := st.MkdirTemp("repair-")
	if err != nil {
		t.Fatal(err)
	}
	tree = filepath.Join(tmp, "tree")
	writeTree(t, tree)
	if err := store.Canonicalise(tree); err != nil {
		t.Fatal(err)
	}
	return tree, tmp
}

// tmpEntries lists the store's temporary area.
func tmpEntries(t *testing.T, st *store.Store) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(st.RealDir(), ".tmp"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestStore_ReplaceValid: the replaced path has the new contents, the
// tree handed in is consumed and the old contents leave nothing behind in
// the temporary area.
func TestStore_ReplaceValid(t *testing.T) {
	cases := []struct {
		name string
		// damage breaks the valid path's contents before the repair.
		damage func(real string)
	}{
		{"Modified", func(real string) {
			os.Chmod(real, 0o755)
			os.Chmod(filepath.Join(real, "a"), 0o644)
			os.WriteFile(filepath.Join(real, "a"), []byte("tampered\n"), 0o644)
		}},
		{"Missing", func(real string) { store.RemoveTree(real) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := storetest.NewStore(t, nil)
			p := addTree(t, st)
			real := st.RealPath(p)
			tc.damage(real)
			tree, tmp := freshCopy(t, st)
			if err := st.ReplaceValid(tree, p); err != nil {
				t.Fatalf("ReplaceValid(%s) = %v, want nil", p, err)
			}
			for name, want := range map[string]string{"a": "one\n", "sub/b": "two\n"} {
				if b, err := os.ReadFile(filepath.Join(real, name)); err != nil || string(b) != want {
					t.Errorf("after ReplaceValid %s = %q, %v, want %q", name, b, err, want)
				}
			}
			if _, err := os.Lstat(tree); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Lstat(%s) = %v after ReplaceValid, want it consumed", tree, err)
			}
			if got := tmpEntries(t, st); len(got) != 1 || got[0] != filepath.Base(tmp) {
				t.Errorf("temporary area holds %q, want only the caller's %s", got, filepath.Base(tmp))
			}
			if err := os.Remove(tmp); err != nil {
				t.Errorf("the caller's temporary directory is not empty: %v", err)
			}
		})
	}
}

// TestStore_ReplaceValid_Atomic: while a path is replaced many times, a
// reader never finds it missing.
func TestStore_ReplaceValid_Atomic(t *testing.T) {
	st := storetest.NewStore(t, nil)
	p := addTree(t, st)
	real := st.RealPath(p)
	done := make(chan struct{})
	var wg sync.WaitGroup
	var missing, looks int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			looks++
			if _, err := os.Lstat(real); err != nil {
				missing++
			}
		}
	}()
	const replaces = 500
	for i := 0; i < replaces; i++ {
		tree, tmp := freshCopy(t, st)
		if err := st.ReplaceValid(tree, p); err != nil {
			t.Fatalf("ReplaceValid(%s) = %v, want nil", p, err)
		}
		os.Remove(tmp)
	}
	close(done)
	wg.Wait()
	if missing > 0 {
		t.Errorf("%s was missing %d times of %d looks during %d replaces, want never", real, missing, looks, replaces)
	}
}
