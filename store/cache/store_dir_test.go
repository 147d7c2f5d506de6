package cache_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/cache"
	"github.com/storefs/storefs/store/storetest"
)

// otherStoreDirCache makes a copy of the xz fixture cache (its files
// linked) whose nix-cache-info says it is for /gnu/store, while its
// narinfos still name /nix/store paths: only the nix-cache-info check
// can refuse it.
func otherStoreDirCache(t testing.TB) string {
	t.Helper()
	src := fixtureCacheDir(t, "cache-xz")
	dir := filepath.Join(t.TempDir(), "gnu-cache")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "nix-cache-info" {
			continue
		}
		if err := os.Symlink(filepath.Join(src, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "nix-cache-info"), []byte("StoreDir: /gnu/store\nPriority: 40\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestCache_OtherStoreDir: a cache whose nix-cache-info is for another
// store directory is refused, with Nix's message naming the cache, its
// store directory and ours, for every read, Fetch and CopyFrom, even
// though its narinfos would parse; its nix-cache-info is read once.
func TestCache_OtherStoreDir(t *testing.T) {
	ctx := context.Background()
	dir := otherStoreDirCache(t)
	const leaf = store.Path("/nix/store/ib5ymw26pl1q7iw9qn4f4z7d730pkw69-leaf")
	ni := fixtureNARInfos(t, "cache-xz")[leaf]
	var infoReads atomic.Int32
	srv := serveDir(t, dir, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/nix-cache-info" {
				infoReads.Add(1)
			}
			h.ServeHTTP(w, r)
		})
	})
	for _, tc := range []struct {
		name string
		c    cache.Cache
	}{
		{"File", openFileCache(t, dir, nil)},
		{"HTTP", newHTTPCache(t, srv.URL, fastRetries(1))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := "binary cache '" + tc.c.URL() + "' is for Nix stores with prefix '/gnu/store', not '/nix/store'"
			check := func(what string, err error) {
				t.Helper()
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("%s = %v, want %q", what, err, want)
				}
			}
			_, err := tc.c.Info(ctx)
			check("Info()", err)
			_, err = tc.c.NARInfo(ctx, leaf.HashPart())
			check("NARInfo()", err)
			rc, err := tc.c.NAR(ctx, ni)
			if err == nil {
				rc.Close()
			}
			check("NAR()", err)
			st := storetest.NewStore(t, nil)
			check("Fetch()", cache.Fetch(ctx, st, tc.c, ni))
			check("CopyFrom()", cache.CopyFrom(ctx, st, []cache.Cache{tc.c}, []store.Path{leaf}, nil))
			checkInvalid(t, st, leaf)
			checkNoTemporaries(t, st)
		})
	}
	if n := infoReads.Load(); n != 1 {
		t.Errorf("nix-cache-info was read %d times over HTTP, want once", n)
	}
}

// TestCache_NoInfo: a cache without nix-cache-info is still used (Nix
// would write one for our store directory), and so is one that gets its
// nix-cache-info after the first read.
func TestCache_NoInfo(t *testing.T) {
	ctx := context.Background()
	src := fixtureCacheDir(t, "cache-xz")
	dir := filepath.Join(t.TempDir(), "no-info")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const leaf = store.Path("/nix/store/ib5ymw26pl1q7iw9qn4f4z7d730pkw69-leaf")
	ni := fixtureNARInfos(t, "cache-xz")[leaf]
	for _, name := range []string{leaf.HashPart() + ".narinfo", "nar"} {
		if err := os.Symlink(filepath.Join(src, name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	c := openFileCache(t, dir, nil)
	st := storetest.NewStore(t, nil)
	if err := cache.CopyFrom(ctx, st, []cache.Cache{c}, []store.Path{leaf}, nil); err != nil {
		t.Fatalf("CopyFrom(cache without nix-cache-info) = %v", err)
	}
	if err := c.PutInfo(ctx, &cache.Info{StoreDir: "/nix/store", Priority: 20}); err != nil {
		t.Fatal(err)
	}
	if info, err := c.Info(ctx); err != nil || info.Priority != 20 {
		t.Errorf("Info() after PutInfo = %+v, %v; want priority 20", info, err)
	}
	if _, err := c.NARInfo(ctx, ni.StorePath.HashPart()); err != nil {
		t.Errorf("NARInfo() = %v", err)
	}
}
