// Package storetest holds test helpers for packages that need a real
// store: a store in a temporary directory whose invariants are checked when
// the test ends, and the Nix 2.8 fixtures in ../shared beside the repository.
package storetest

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/nar"
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

// busyboxSHA256 is the sha256 of Debian's busybox-static 1:1.35.0-4+deb12u1
// binary, which the fixtures were made with.
const busyboxSHA256 = "3d9f2889d6782537624a4e1a10e68a2ddd53e0ee8bac02676f27308f42ec6bf6"

// BusyboxDir makes a directory holding bin/busybox that imports as
// BusyboxPath: Debian's /bin/busybox when it is the fixtures' version,
// else the busybox restored from the fixture cache's NAR (the test log
// says which).
func BusyboxDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "busybox")
	data, err := os.ReadFile("/bin/busybox")
	if err == nil && fmt.Sprintf("%x", sha256.Sum256(data)) == busyboxSHA256 {
		if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), data, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	t.Logf("/bin/busybox is not the fixtures' busybox-static (%v): using the one in the fixture cache", err)
	cacheDir := filepath.Join(FixturesDir(t), "cache-zstd")
	info, err := os.ReadFile(filepath.Join(cacheDir, "71fc7s32zl20dc955bhghy5dvalm7ndz.narinfo"))
	if err != nil {
		t.Fatal(err)
	}
	var url string
	for _, line := range strings.Split(string(info), "\n") {
		if u, ok := strings.CutPrefix(line, "URL: "); ok {
			url = u
		}
	}
	f, err := os.Open(filepath.Join(cacheDir, url))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec, err := zstd.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	if err := nar.Restore(dec, dir); err != nil {
		t.Fatalf("restoring busybox from the fixture cache: %v", err)
	}
	return dir
}

// AddBusybox adds BusyboxDir as "busybox", which gives BusyboxPath in
// /nix/store.
func AddBusybox(t testing.TB, st *store.Store) store.Path {
	t.Helper()
	p, err := st.AddPath(context.Background(), BusyboxDir(t), "busybox")
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
