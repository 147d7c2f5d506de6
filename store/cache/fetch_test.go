package cache_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/cache"
	"github.com/storefs/storefs/store/nar/nartest"
	"github.com/storefs/storefs/store/storetest"
)

func TestFetch_Fixtures(t *testing.T) {
	for _, name := range fixtureCaches {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st := storetest.NewStore(t, nil)
			c := cache.NewSignatureCheckingCache(openFileCache(t, fixtureCacheDir(t, name), nil), fixtureKeys(t))
			want := fixtureNARInfos(t, name)
			fetchAll(t, st, want, func(w *cache.NARInfo) error {
				ni, err := c.NARInfo(ctx, w.StorePath.HashPart())
				if err != nil {
					return err
				}
				return cache.Fetch(ctx, st, c, ni)
			})
			for p, w := range want {
				info, err := st.PathInfo(p)
				if err != nil {
					t.Fatalf("PathInfo(%s) = %v", p, err)
				}
				if !info.NARHash.Equal(w.NARHash) || info.NARSize != w.NARSize {
					t.Errorf("%s: NAR hash %s size %d, want %s %d", p, info.NARHash, info.NARSize, w.NARHash, w.NARSize)
				}
				refs := slices.Clone(info.References)
				store.SortPaths(refs)
				if !slices.Equal(refs, w.References) {
					t.Errorf("%s: references %v, want %v", p, refs, w.References)
				}
				if info.Deriver != w.Deriver || info.CA != w.CA || info.Ultimate {
					t.Errorf("%s: deriver %q, CA %q, ultimate %v; want %q, %q, false", p, info.Deriver, info.CA, info.Ultimate, w.Deriver, w.CA)
				}
				if !slices.Equal(info.Signatures, w.Sigs) {
					t.Errorf("%s: signatures %q, want %q", p, info.Signatures, w.Sigs)
				}
				// Substituted .drv files fill the output index.
				if _, ok := want[w.Deriver]; ok {
					derivers, err := st.Derivers(p)
					if err != nil {
						t.Fatal(err)
					}
					if !slices.ContainsFunc(derivers, func(d store.DerivationOutputRef) bool { return d.Drv == w.Deriver }) {
						t.Errorf("Derivers(%s) = %v, want %s among them", p, derivers, w.Deriver)
					}
				}
			}
			checkNoTemporaries(t, st)
		})
	}
}

// hostileNAR is the NAR of a tree with a large file, so that reading all
// of it would show.
func hostileNAR() []byte {
	return nartest.NAR(nartest.Dir(
		nartest.E("big", nartest.File(strings.Repeat("0123456789abcdef", 64<<10))),
		nartest.E("small", nartest.File("hello\n")),
	))
}

// hostilePath is the path the hostile cases claim to be.
const hostilePath store.Path = "/nix/store/0h3s5ydkdvlz4jdmgfsgm1c4p0d3mk57-hostile"

// cacheWithNAR writes data as a NAR, zstd-compressed, into a new cache
// with a narinfo for hostilePath that describes want (its hash and size),
// then lets edit change the narinfo.
func cacheWithNAR(t testing.TB, data, want []byte, edit func(*cache.NARInfo)) (cache.Cache, *cache.NARInfo) {
	t.Helper()
	c := openFileCache(t, t.TempDir(), &cache.Options{Compression: "zstd"})
	ni := &cache.NARInfo{
		StorePath: hostilePath,
		NARHash:   store.HashBytes(store.SHA256, want),
		NARSize:   uint64(len(want)),
	}
	if err := c.PutNAR(context.Background(), ni, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(ni)
	}
	if err := c.PutNARInfo(context.Background(), ni); err != nil {
		t.Fatal(err)
	}
	return c, ni
}

// countingCache counts the decompressed NAR bytes read from a cache.
type countingCache struct {
	cache.Cache
	n *atomic.Int64
}

func (c countingCache) NAR(ctx context.Context, ni *cache.NARInfo) (io.ReadCloser, error) {
	rc, err := c.Cache.NAR(ctx, ni)
	if err != nil {
		return nil, err
	}
	return &countingReadCloser{ReadCloser: rc, n: c.n}, nil
}

type countingReadCloser struct {
	io.ReadCloser
	n *atomic.Int64
}

func (r *countingReadCloser) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.n.Add(int64(n))
	return n, err
}

func TestFetch_Hostile(t *testing.T) {
	good := hostileNAR()
	tampered := bytes.Clone(good)
	tampered[len(tampered)/2] ^= 1
	cases := []struct {
		name     string
		data     []byte // the NAR in the cache
		want     []byte // the NAR the narinfo describes
		edit     func(*cache.NARInfo)
		mismatch bool // the error is a hash or size mismatch
	}{
		{name: "TamperedBytes", data: tampered, want: good, mismatch: true},
		{name: "Truncated", data: good[:len(good)-24], want: good},
		{name: "TruncatedInContents", data: good[:len(good)/2], want: good},
		{name: "TrailingGarbage", data: append(bytes.Clone(good), "garbage!"...), want: good, mismatch: true},
		{name: "LargerThanNarSize", data: good, want: good, edit: func(ni *cache.NARInfo) { ni.NARSize = 4096 }, mismatch: true},
		{name: "SmallerThanNarSize", data: good, want: good, edit: func(ni *cache.NARInfo) { ni.NARSize += 8 }, mismatch: true},
		{name: "WrongNarHash", data: good, want: good, edit: func(ni *cache.NARInfo) {
			ni.NARHash = store.HashString(store.SHA256, "something else")
		}, mismatch: true},
		{name: "WrongCA", data: nartest.NAR(nartest.File("hello\n")), want: nartest.NAR(nartest.File("hello\n")), edit: func(ni *cache.NARInfo) {
			ni.CA = store.TextCA(store.HashString(store.SHA256, "goodbye\n"))
		}, mismatch: true},
		{name: "CAOfADirectory", data: good, want: good, edit: func(ni *cache.NARInfo) {
			ni.CA = store.TextCA(store.HashString(store.SHA256, "hello\n"))
		}},
	}
	for _, m := range nartest.Malicious() {
		cases = append(cases, struct {
			name     string
			data     []byte
			want     []byte
			edit     func(*cache.NARInfo)
			mismatch bool
		}{name: "Malicious/" + m.Name, data: m.Data, want: m.Data})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.want) == 0 {
				t.Skip("an empty NAR cannot have a narinfo: NarSize must not be 0")
			}
			st := storetest.NewStore(t, nil)
			c, ni := cacheWithNAR(t, tc.data, tc.want, tc.edit)
			var read atomic.Int64
			err := cache.Fetch(context.Background(), st, countingCache{Cache: c, n: &read}, ni)
			if err == nil {
				t.Fatalf("Fetch() = nil, want a refusal")
			}
			if tc.mismatch && !errors.Is(err, store.ErrHashMismatch) {
				t.Errorf("Fetch() = %v, want ErrHashMismatch", err)
			}
			if !strings.Contains(err.Error(), string(hostilePath)) {
				t.Errorf("Fetch() = %v, want the error to name the path", err)
			}
			if n := read.Load(); n > int64(ni.NARSize)+1 {
				t.Errorf("Fetch() read %d bytes of NAR, want at most NarSize+1 = %d", n, ni.NARSize+1)
			}
			checkInvalid(t, st, hostilePath)
			checkNoTemporaries(t, st)
			if _, err := os.Lstat(nartest.EscapeAbs); err == nil {
				t.Errorf("%s exists: the NAR escaped", nartest.EscapeAbs)
			}
		})
	}
}

func TestFetch_Messages(t *testing.T) {
	good := hostileNAR()
	st := storetest.NewStore(t, nil)
	c, ni := cacheWithNAR(t, good, good, func(ni *cache.NARInfo) {
		ni.NARHash = store.HashString(store.SHA256, "x")
	})
	err := cache.Fetch(context.Background(), st, c, ni)
	want := "substituting '" + string(hostilePath) + "' from '" + c.URL() + "': hash mismatch importing path '" + string(hostilePath) + "';\n" +
		"  specified: " + store.HashString(store.SHA256, "x").String() + "\n" +
		"  got:       " + store.HashBytes(store.SHA256, good).String()
	if err == nil || err.Error() != want {
		t.Errorf("Fetch() = %v, want\n%s", err, want)
	}
}

func TestFetch_ReferenceNotValid(t *testing.T) {
	good := hostileNAR()
	st := storetest.NewStore(t, nil)
	c, ni := cacheWithNAR(t, good, good, func(ni *cache.NARInfo) {
		ni.References = []store.Path{"/nix/store/5q7fqmvwy98765w5xh3gj3425fy94zpr-chain-19"}
	})
	var read atomic.Int64
	err := cache.Fetch(context.Background(), st, countingCache{Cache: c, n: &read}, ni)
	if !errors.Is(err, store.ErrNotValid) {
		t.Errorf("Fetch() = %v, want ErrNotValid", err)
	}
	if read.Load() != 0 {
		t.Errorf("Fetch() read %d bytes of NAR before finding a missing reference", read.Load())
	}
	checkInvalid(t, st, hostilePath)
	checkNoTemporaries(t, st)
}

func TestFetch_SelfReferenceAndValid(t *testing.T) {
	good := hostileNAR()
	st := storetest.NewStore(t, nil)
	c, ni := cacheWithNAR(t, good, good, func(ni *cache.NARInfo) {
		ni.References = []store.Path{hostilePath}
	})
	if err := cache.Fetch(context.Background(), st, c, ni); err != nil {
		t.Fatalf("Fetch(self-referencing path) = %v", err)
	}
	// Valid already: nothing is read.
	var read atomic.Int64
	if err := cache.Fetch(context.Background(), st, countingCache{Cache: c, n: &read}, ni); err != nil || read.Load() != 0 {
		t.Errorf("Fetch(valid path) = %v after reading %d bytes, want nil and nothing read", err, read.Load())
	}
}

func TestFetch_Cancelled(t *testing.T) {
	good := hostileNAR()
	st := storetest.NewStore(t, nil)
	c, ni := cacheWithNAR(t, good, good, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := cache.Fetch(ctx, st, c, ni); !errors.Is(err, context.Canceled) {
		t.Errorf("Fetch(cancelled) = %v, want context.Canceled", err)
	}
	checkInvalid(t, st, hostilePath)
	checkNoTemporaries(t, st)
}

func TestFetch_OtherStoreDir(t *testing.T) {
	st := storetest.NewStore(t, &store.Options{Dir: "/gnu/store"})
	ni := &cache.NARInfo{StorePath: hostilePath, NARHash: store.HashString(store.SHA256, ""), NARSize: 8}
	if err := cache.Fetch(context.Background(), st, openFileCache(t, t.TempDir(), nil), ni); !errors.Is(err, store.ErrInvalidPath) {
		t.Errorf("Fetch(path of another store) = %v, want ErrInvalidPath", err)
	}
}

// TestFetch_MaliciousNoEscape checks that what the malicious NARs aim at
// beside the temporary tree is not created.
func TestFetch_MaliciousNoEscape(t *testing.T) {
	st := storetest.NewStore(t, nil)
	for _, m := range nartest.Malicious() {
		if len(m.Data) == 0 {
			continue
		}
		c, ni := cacheWithNAR(t, m.Data, m.Data, nil)
		if err := cache.Fetch(context.Background(), st, c, ni); err == nil {
			t.Errorf("Fetch(%s) = nil, want an error", m.Name)
		}
	}
	filepath.WalkDir(st.StateDir(), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == nartest.EscapeName {
			t.Errorf("%s was created", p)
		}
		return nil
	})
}

// TestFetch_RecursiveSHA1 checks a recursive content address of another
// algorithm than the NAR hash's, which Fetch hashes in the same pass.
func TestFetch_RecursiveSHA1(t *testing.T) {
	data := nartest.NAR(nartest.Sample())
	sha1 := store.HashBytes(store.SHA1, data)
	cases := []struct {
		name string
		ca   store.Hash
		ok   bool
	}{
		{"Right", sha1, true},
		{"Wrong", store.HashString(store.SHA1, "other"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := storetest.NewStore(t, nil)
			p, err := store.DefaultDir.MakeFixedOutputPath("sample", true, tc.ca, nil, false)
			if err != nil {
				t.Fatal(err)
			}
			c, ni := cacheWithNAR(t, data, data, func(ni *cache.NARInfo) {
				ni.StorePath = p
				ni.CA = store.FixedCA(true, tc.ca)
			})
			err = cache.Fetch(context.Background(), st, c, ni)
			if tc.ok != (err == nil) || (!tc.ok && !errors.Is(err, store.ErrHashMismatch)) {
				t.Fatalf("Fetch() = %v, want success %v", err, tc.ok)
			}
			if tc.ok {
				info, err := st.PathInfo(p)
				if err != nil || info.CA != store.FixedCA(true, sha1) {
					t.Errorf("PathInfo() = %+v, %v; want the CA recorded", info, err)
				}
			} else {
				checkInvalid(t, st, p)
			}
			checkNoTemporaries(t, st)
		})
	}
}
