package cache_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/cache"
	"github.com/storefs/storefs/store/storetest"
)

// fixtureStore returns a store holding the closure of sampleRoots from
// the zstd fixture cache, the roots, and the narinfos of the closure.
func fixtureStore(t testing.TB) (*store.Store, []store.Path, map[store.Path]*cache.NARInfo) {
	t.Helper()
	st := storetest.NewStore(t, nil)
	all := fixtureNARInfos(t, "cache-zstd")
	roots := sampleRoots(all)
	c := openFileCache(t, fixtureCacheDir(t, "cache-zstd"), nil)
	if err := cache.CopyFrom(context.Background(), st, []cache.Cache{c}, roots, nil); err != nil {
		t.Fatalf("CopyFrom(fixtures) = %v", err)
	}
	closure, err := st.Closure(roots)
	if err != nil {
		t.Fatal(err)
	}
	nis := map[store.Path]*cache.NARInfo{}
	for _, p := range closure {
		nis[p] = all[p]
	}
	return st, roots, nis
}

// putCounter counts the NARs written to a cache.
type putCounter struct {
	cache.Cache
	n *atomic.Int32
}

func (c putCounter) PutNAR(ctx context.Context, ni *cache.NARInfo, r io.Reader) error {
	c.n.Add(1)
	return c.Cache.PutNAR(ctx, ni, r)
}

func TestCopyTo_RoundTrip(t *testing.T) {
	ctx := context.Background()
	src, roots, nis := fixtureStore(t)
	for _, method := range []string{"zstd", "xz", "none"} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			key, err := cache.GenerateKey("storefs-test-1", nil)
			if err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(t.TempDir(), "cache")
			var puts atomic.Int32
			c := putCounter{cache.NewSigningCache(openFileCache(t, dir, &cache.Options{Compression: method}), key), &puts}
			if err := cache.CopyTo(ctx, src, c, roots, nil); err != nil {
				t.Fatalf("CopyTo() = %v", err)
			}
			if got := int(puts.Load()); got != len(nis) {
				t.Errorf("%d NARs written, want %d", got, len(nis))
			}
			info, err := os.ReadFile(filepath.Join(dir, "nix-cache-info"))
			if err != nil || string(info) != "StoreDir: /nix/store\n" {
				t.Errorf("nix-cache-info = %q, %v; want Nix's", info, err)
			}
			keys := cache.PublicKeys{key.Name: key.PublicKey().Key}
			ext := map[string]string{"zstd": ".nar.zst", "xz": ".nar.xz", "none": ".nar"}[method]
			for p, want := range nis {
				ni, err := c.NARInfo(ctx, p.HashPart())
				if err != nil {
					t.Fatalf("NARInfo(%s) = %v", p, err)
				}
				if !ni.NARHash.Equal(want.NARHash) || ni.NARSize != want.NARSize || ni.Compression != method || !strings.HasSuffix(ni.URL, ext) {
					t.Errorf("narinfo of %s:\n%s\nwant NAR hash %s, compression %s", p, ni, want.NARHash, method)
				}
				// The store's signatures (Nix's key) are kept, and ours added.
				if ni.ValidSignatures(keys) != 1 || ni.ValidSignatures(fixtureKeys(t)) != 1 {
					t.Errorf("narinfo of %s has signatures %q, want Nix's and ours", p, ni.Sigs)
				}
			}

			// Back into another store, through the signature check.
			dst := storetest.NewStore(t, nil)
			from := cache.NewSignatureCheckingCache(openFileCache(t, dir, nil), keys)
			if err := cache.CopyFrom(ctx, dst, []cache.Cache{from}, roots, nil); err != nil {
				t.Fatalf("CopyFrom() = %v", err)
			}
			for p := range nis {
				a, err := src.PathInfo(p)
				if err != nil {
					t.Fatal(err)
				}
				b, err := dst.PathInfo(p)
				if err != nil {
					t.Fatalf("PathInfo(%s) in the copy = %v", p, err)
				}
				if !a.NARHash.Equal(b.NARHash) || a.NARSize != b.NARSize {
					t.Errorf("%s: NAR hash %s in the copy, %s in the original", p, b.NARHash, a.NARHash)
				}
			}

			// Again: the cache has everything, nothing is written.
			puts.Store(0)
			if err := cache.CopyTo(ctx, src, c, roots, nil); err != nil || puts.Load() != 0 {
				t.Errorf("CopyTo() again = %v after writing %d NARs, want nil and none", err, puts.Load())
			}
		})
	}
}

func TestCopyTo_Derivation(t *testing.T) {
	ctx := context.Background()
	src, _, nis := fixtureStore(t)
	const drv store.Path = "/nix/store/qk91kngg24qcz9i6ns86wzihpcgjbij9-chain-20.drv"
	if _, ok := nis[drv]; !ok {
		t.Fatalf("%s is not in the fixtures", drv)
	}
	dir := t.TempDir()
	if err := cache.CopyTo(ctx, src, openFileCache(t, dir, &cache.Options{Compression: "zstd"}), []store.Path{drv}, nil); err != nil {
		t.Fatalf("CopyTo(%s) = %v", drv, err)
	}
	want, err := src.Closure([]store.Path{drv})
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.narinfo"))
	if len(files) != len(want) {
		t.Errorf("%d narinfos written, want the %d paths of the closure of %s", len(files), len(want), drv)
	}
	for _, p := range want {
		if _, err := os.Stat(filepath.Join(dir, p.HashPart()+".narinfo")); err != nil {
			t.Errorf("%s of the closure is missing: %v", p, err)
		}
	}
	// Not the output.
	if _, err := os.Stat(filepath.Join(dir, "023z915q4il2a1ignka406l584flfff7.narinfo")); err == nil {
		t.Errorf("the output of %s was copied", drv)
	}

	// Substituting the .drv tells the new store its outputs.
	dst := storetest.NewStore(t, nil)
	if err := cache.CopyFrom(ctx, dst, []cache.Cache{openFileCache(t, dir, nil)}, []store.Path{drv}, nil); err != nil {
		t.Fatalf("CopyFrom(%s) = %v", drv, err)
	}
	outs, err := dst.DerivationOutputs(drv)
	if err != nil || outs["out"] != "/nix/store/023z915q4il2a1ignka406l584flfff7-chain-20" {
		t.Errorf("DerivationOutputs(%s) = %v, %v; want its output", drv, outs, err)
	}
}

func TestCopyTo_Open(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewStore(t, nil)
	p, err := st.AddText(ctx, "hello", []byte("hello\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := cache.GenerateKey("k-1", nil)
	keyFile := filepath.Join(t.TempDir(), "k.sec")
	os.WriteFile(keyFile, []byte(key.String()), 0o600)
	dir := t.TempDir()
	c, err := cache.Open("file://"+dir+"?compression=zstd&secret-key="+keyFile+"&compression-level=19&priority=12", nil)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	if err := cache.CopyTo(ctx, st, c, []store.Path{p}, nil); err != nil {
		t.Fatalf("CopyTo() = %v", err)
	}
	ni, err := c.NARInfo(ctx, p.HashPart())
	if err != nil {
		t.Fatal(err)
	}
	if ni.Compression != "zstd" || ni.ValidSignatures(cache.PublicKeys{"k-1": key.PublicKey().Key}) != 1 {
		t.Errorf("narinfo =\n%s\nwant zstd, signed by k-1", ni)
	}
	if info, err := c.Info(ctx); err != nil || info.Priority != 12 {
		t.Errorf("Info() = %+v, %v; want priority 12 from the URL", info, err)
	}
}

func TestCopyTo_CorruptedPath(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewStore(t, nil)
	p, err := st.AddText(ctx, "hello", []byte("hello\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Change the contents behind the store's back, and put them back
	// before the store is verified at the end of the test.
	real := st.RealPath(p)
	os.Chmod(real, 0o644)
	os.WriteFile(real, []byte("HELLO\n"), 0o644)
	t.Cleanup(func() {
		os.WriteFile(real, []byte("hello\n"), 0o444)
		os.Chmod(real, 0o444)
	})
	dir := t.TempDir()
	err = cache.CopyTo(ctx, st, openFileCache(t, dir, &cache.Options{Compression: "none"}), []store.Path{p}, nil)
	if !errors.Is(err, store.ErrHashMismatch) || !strings.Contains(err.Error(), "refusing to copy corrupted path") {
		t.Errorf("CopyTo() = %v, want a refusal", err)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "*.narinfo")); len(files) != 0 {
		t.Errorf("narinfos written for a corrupted path: %v", files)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "nar", "*")); len(files) != 0 {
		t.Errorf("NARs written for a corrupted path: %v", files)
	}
}

func TestCopyTo_NotValid(t *testing.T) {
	st := storetest.NewStore(t, nil)
	err := cache.CopyTo(context.Background(), st, openFileCache(t, t.TempDir(), nil), []store.Path{hostilePath}, nil)
	if !errors.Is(err, store.ErrNotValid) {
		t.Errorf("CopyTo(invalid path) = %v, want ErrNotValid", err)
	}
}

func TestCopyFrom_Caches(t *testing.T) {
	ctx := context.Background()
	nis := fixtureNARInfos(t, "cache-zstd")
	const top store.Path = "/nix/store/023z915q4il2a1ignka406l584flfff7-chain-20"
	full := openFileCache(t, fixtureCacheDir(t, "cache-zstd"), nil)
	t.Run("NotFound", func(t *testing.T) {
		st := storetest.NewStore(t, nil)
		err := cache.CopyFrom(ctx, st, []cache.Cache{openFileCache(t, t.TempDir(), nil)}, []store.Path{top}, nil)
		if !errors.Is(err, cache.ErrNotFound) || !strings.Contains(err.Error(), string(top)) {
			t.Errorf("CopyFrom() = %v, want ErrNotFound naming the path", err)
		}
	})
	t.Run("Fallback", func(t *testing.T) {
		// The first cache has the top path only; its closure comes from
		// the second.
		partial := t.TempDir()
		for _, f := range []string{"nix-cache-info", top.HashPart() + ".narinfo", nis[top].URL} {
			data, err := os.ReadFile(filepath.Join(fixtureCacheDir(t, "cache-zstd"), f))
			if err != nil {
				t.Fatal(err)
			}
			os.MkdirAll(filepath.Dir(filepath.Join(partial, f)), 0o755)
			os.WriteFile(filepath.Join(partial, f), data, 0o644)
		}
		st := storetest.NewStore(t, nil)
		if err := cache.CopyFrom(ctx, st, []cache.Cache{openFileCache(t, partial, nil), full}, []store.Path{top}, nil); err != nil {
			t.Fatalf("CopyFrom() = %v", err)
		}
		closure, err := st.Closure([]store.Path{top})
		if err != nil || len(closure) < 20 {
			t.Errorf("Closure(%s) = %d paths, %v; want the chain", top, len(closure), err)
		}
	})
	t.Run("SkipsValid", func(t *testing.T) {
		st := storetest.NewStore(t, nil)
		if err := cache.CopyFrom(ctx, st, []cache.Cache{full}, []store.Path{top}, nil); err != nil {
			t.Fatal(err)
		}
		// An empty cache is enough for what is valid.
		if err := cache.CopyFrom(ctx, st, []cache.Cache{openFileCache(t, t.TempDir(), nil)}, []store.Path{top}, nil); err != nil {
			t.Errorf("CopyFrom(valid path) = %v, want nil", err)
		}
	})
	t.Run("Untrusted", func(t *testing.T) {
		st := storetest.NewStore(t, nil)
		other, _ := cache.GenerateKey("other-1", nil)
		c := cache.NewSignatureCheckingCache(full, cache.PublicKeys{other.Name: other.PublicKey().Key})
		err := cache.CopyFrom(ctx, st, []cache.Cache{c}, []store.Path{top}, nil)
		if !errors.Is(err, cache.ErrUntrusted) {
			t.Errorf("CopyFrom() = %v, want ErrUntrusted", err)
		}
		if all, _ := st.AllValid(); len(all) != 0 {
			t.Errorf("%d paths valid after a refused copy, want none", len(all))
		}
	})
}
