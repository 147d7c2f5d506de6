// Package storetest holds test helpers for packages that need a real
// store: a store in a temporary directory whose invariants are checked when
// the test ends, and the Nix 2.8 fixtures in ../shared beside the repository.
package storetest

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/storefs/storefs/store"
)

// RepoRoot is the directory holding go.mod, found upwards from the test's
// working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}

// FixturesDir is ../shared/fixtures/nix-2.8 beside the repository: what
// real Nix 2.8 produced. Tests fail (not skip) without it: CI has it.
func FixturesDir(t testing.TB) string {
	t.Helper()
	d := filepath.Join(RepoRoot(t), "..", "shared", "fixtures", "nix-2.8")
	if _, err := os.Stat(d); err != nil {
		t.Fatalf("Nix fixtures not found: %v (they live in ../shared beside the repository)", err)
	}
	return d
}

// NewStore opens a store in a fresh temporary state directory. When the
// test ends it verifies the store (closure, referrers, NAR hashes, no stray
// entries) and closes it.
func NewStore(t testing.TB, opts *store.Options) *store.Store {
	t.Helper()
	return OpenStore(t, t.TempDir(), opts)
}

// OpenStore opens the store in stateDir, verified and closed at the end of
// the test.
func OpenStore(t testing.TB, stateDir string, opts *store.Options) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), stateDir, opts)
	if err != nil {
		t.Fatalf("store.Open(%s) = %v", stateDir, err)
	}
	t.Cleanup(func() {
		Verify(t, st)
		if err := st.Close(); err != nil {
			t.Errorf("closing store: %v", err)
		}
	})
	return st
}

// Verify fails the test if the store has any inconsistency, contents
// included.
func Verify(t testing.TB, st *store.Store) {
	t.Helper()
	problems, err := st.Verify(true)
	if err != nil {
		t.Errorf("verifying store: %v", err)
		return
	}
	for _, p := range problems {
		t.Errorf("store invariant broken: %s", p)
	}
}

// BusyboxPath is the source path that Nix gives Debian's static busybox
// imported as a directory bin/busybox named "busybox".
const BusyboxPath = "/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox"

// AddBusybox adds /bin/busybox as <dir>/bin/busybox under the name
// "busybox", which with Debian's busybox-static 1.35.0 gives BusyboxPath in
// /nix/store.
func AddBusybox(t testing.TB, st *store.Store) store.Path {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "busybox")
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("reading /bin/busybox (Debian's busybox-static): %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := st.AddPath(context.Background(), dir, "busybox")
	if err != nil {
		t.Fatalf("AddPath(busybox) = %v", err)
	}
	return p
}

// AddFixtureDerivations adds every .drv of the Nix fixtures (inputs first)
// to st, which must have BusyboxPath valid and /nix/store as its directory.
func AddFixtureDerivations(t testing.TB, st *store.Store) {
	t.Helper()
	dir := filepath.Join(FixturesDir(t), "drvs", "store")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	pending := map[store.Path]*store.Derivation{}
	for _, e := range entries {
		text, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		p := store.Path("/nix/store/" + e.Name())
		name, err := store.NameFromDrvPath(p)
		if err != nil {
			t.Fatal(err)
		}
		d, err := store.ParseDerivation(st.Dir, text, name)
		if err != nil {
			t.Fatalf("parsing fixture %s: %v", p, err)
		}
		pending[p] = d
	}
	for len(pending) > 0 {
		progress := false
		for p, d := range pending {
			ready := true
			for in := range d.InputDrvs {
				if _, waiting := pending[in]; waiting {
					ready = false
					break
				}
			}
			if !ready {
				continue
			}
			got, err := st.AddDerivation(context.Background(), d)
			if err != nil || got != p {
				t.Fatalf("AddDerivation(%s) = %s, %v", p, got, err)
			}
			delete(pending, p)
			progress = true
		}
		if !progress {
			t.Fatalf("fixture derivations with inputs outside the fixtures: %d left", len(pending))
		}
	}
}
