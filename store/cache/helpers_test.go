package cache_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/cache"
	"github.com/storefs/storefs/store/storetest"
)

// fixtureCaches are the binary caches Nix 2.8 wrote, by compression.
var fixtureCaches = []string{"cache-xz", "cache-zstd"}

// fixtureCacheDir is the directory of a fixture cache.
func fixtureCacheDir(t testing.TB, name string) string {
	t.Helper()
	return filepath.Join(storetest.FixturesDir(t), name)
}

// fixtureKeys are the keys that signed the fixture caches.
func fixtureKeys(t testing.TB) cache.PublicKeys {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(storetest.FixturesDir(t), "cache-public.key"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := cache.ParsePublicKeys([]string{strings.TrimSpace(string(data))})
	if err != nil {
		t.Fatalf("ParsePublicKeys(cache-public.key) = %v", err)
	}
	return keys
}

// fixtureNARInfos parses every narinfo of a fixture cache, by store path.
func fixtureNARInfos(t testing.TB, name string) map[store.Path]*cache.NARInfo {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(fixtureCacheDir(t, name), "*.narinfo"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no narinfo in fixture cache %s", name)
	}
	out := map[store.Path]*cache.NARInfo{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ni, err := cache.ParseNARInfo(store.DefaultDir, data)
		if err != nil {
			t.Fatalf("ParseNARInfo(%s) = %v", f, err)
		}
		out[ni.StorePath] = ni
	}
	return out
}

// referencesFirst orders narinfos so that each comes after its
// references.
func referencesFirst(t testing.TB, nis map[store.Path]*cache.NARInfo) []*cache.NARInfo {
	t.Helper()
	var out []*cache.NARInfo
	done := store.NewPathSet()
	var visit func(p store.Path, depth int)
	visit = func(p store.Path, depth int) {
		if done.Has(p) {
			return
		}
		if depth > len(nis) {
			t.Fatalf("reference cycle through %s", p)
		}
		ni, ok := nis[p]
		if !ok {
			t.Fatalf("reference %s is not in the cache", p)
		}
		for _, r := range ni.References {
			if r != p {
				visit(r, depth+1)
			}
		}
		done.Add(p)
		out = append(out, ni)
	}
	for _, p := range store.NewPathSet(keys(nis)...).Sorted() {
		visit(p, 0)
	}
	return out
}

func keys[V any](m map[store.Path]V) []store.Path {
	out := make([]store.Path, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// openFileCache opens the fixture or test cache in dir.
func openFileCache(t testing.TB, dir string, opts *cache.Options) cache.Cache {
	t.Helper()
	c, err := cache.NewFileCache(dir, opts)
	if err != nil {
		t.Fatalf("NewFileCache(%s) = %v", dir, err)
	}
	return c
}

// checkNoTemporaries fails if the store's temporary area holds anything.
func checkNoTemporaries(t testing.TB, st *store.Store) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(st.RealDir(), ".tmp"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("temporary %s left in the store", e.Name())
	}
}

// checkInvalid fails if p is valid in st.
func checkInvalid(t testing.TB, st *store.Store, p store.Path) {
	t.Helper()
	ok, err := st.IsValid(p)
	if err != nil {
		t.Fatal(err)
	}
	if ok {
		t.Errorf("IsValid(%s) = true after a refused substitution, want false", p)
	}
	if _, err := os.Lstat(st.RealPath(p)); err == nil {
		t.Errorf("%s exists in the backing store after a refused substitution", st.RealPath(p))
	}
}

// byLevel groups narinfos by depth: each path comes in a later level
// than all of its references, so fetching level after level is in
// reference order, and the paths of one level can be fetched at once.
func byLevel(t testing.TB, nis map[store.Path]*cache.NARInfo) [][]*cache.NARInfo {
	t.Helper()
	depth := map[store.Path]int{}
	var levels [][]*cache.NARInfo
	for _, ni := range referencesFirst(t, nis) {
		d := 0
		for _, r := range ni.References {
			if r != ni.StorePath {
				d = max(d, depth[r]+1)
			}
		}
		depth[ni.StorePath] = d
		for len(levels) <= d {
			levels = append(levels, nil)
		}
		levels[d] = append(levels[d], ni)
	}
	return levels
}

// fetchAll fetches every path of nis into st in reference order, the
// paths of a level at once (registrations then share commits, see
// store.DB's Batch), and fails the test on the first error.
func fetchAll(t testing.TB, st *store.Store, nis map[store.Path]*cache.NARInfo, fetch func(*cache.NARInfo) error) {
	t.Helper()
	for _, level := range byLevel(t, nis) {
		errs := make([]error, len(level))
		var wg sync.WaitGroup
		for i, ni := range level {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = fetch(ni)
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("fetching %s: %v", level[i].StorePath, err)
			}
		}
	}
}

// fixtureRoots returns the paths of a fixture cache that no other path
// refers to: their closures are the whole cache.
func fixtureRoots(nis map[store.Path]*cache.NARInfo) []store.Path {
	referred := store.NewPathSet()
	for _, ni := range nis {
		for _, r := range ni.References {
			if r != ni.StorePath {
				referred.Add(r)
			}
		}
	}
	var roots []store.Path
	for p := range nis {
		if !referred.Has(p) {
			roots = append(roots, p)
		}
	}
	store.SortPaths(roots)
	return roots
}

// sampleRoots are the fixture roots without the long chain, plus a
// chain of 20 outputs and one of 20 derivations: every kind of path in
// about a quarter of the cache.
func sampleRoots(nis map[store.Path]*cache.NARInfo) []store.Path {
	out := []store.Path{
		"/nix/store/023z915q4il2a1ignka406l584flfff7-chain-20",
		"/nix/store/qk91kngg24qcz9i6ns86wzihpcgjbij9-chain-20.drv",
	}
	for _, p := range fixtureRoots(nis) {
		if !strings.HasPrefix(p.Name(), "chain-") {
			out = append(out, p)
		}
	}
	return out
}
