package cache

import (
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/storetest"
)

// fixtureNARInfoFiles reads the narinfos of the xz fixture cache Nix 2.8
// wrote, and the key that signed them.
func fixtureNARInfoFiles(f *testing.F) ([][]byte, PublicKeys) {
	f.Helper()
	dir := storetest.FixturesDir(f)
	files, err := filepath.Glob(filepath.Join(dir, "cache-xz", "*.narinfo"))
	if err != nil || len(files) < 400 {
		f.Fatalf("fixture narinfos: %d files, %v", len(files), err)
	}
	var out [][]byte
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	key, err := os.ReadFile(filepath.Join(dir, "cache-public.key"))
	if err != nil {
		f.Fatal(err)
	}
	keys, err := ParsePublicKeys([]string{strings.TrimSpace(string(key))})
	if err != nil {
		f.Fatal(err)
	}
	return out, keys
}

// FuzzParseNARInfo checks the narinfo parser on any input. What it
// accepts prints (String) as a narinfo that parses to the same value and
// prints the same again; a narinfo it writes to a cache has a NAR URL that
// stays in the cache. Seeded with Nix's signed narinfos, it also checks
// that a signature still verifying after any change vouches for the same
// path, NAR hash, size and references: the signed fields cannot be
// altered, nor another path's signature reused.
func FuzzParseNARInfo(f *testing.F) {
	seeds, keys := fixtureNARInfoFiles(f)
	signed := map[store.Path]*NARInfo{}
	for _, s := range seeds {
		ni, err := ParseNARInfo(store.DefaultDir, s)
		if err != nil {
			f.Fatalf("fixture narinfo: %v", err)
		}
		signed[ni.StorePath] = ni
		f.Add(s)
	}
	f.Add([]byte("StorePath: /nix/store/023z915q4il2a1ignka406l584flfff7-chain-20\nURL: ../../etc/shadow\nNarHash: sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\nNarSize: 8\nReferences: \nSig: x\nSig: x\nCA: fixed:r:sha1:0000000000000000000000000000000000000000\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ni, err := ParseNARInfo(store.DefaultDir, data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "invalid narinfo") {
				t.Fatalf("ParseNARInfo = %v, want an 'invalid narinfo' error", err)
			}
			return
		}
		if ni.URL == "" || ni.NARSize == 0 || ni.NARHash.Algo != store.SHA256 || ni.Compression == "" {
			t.Fatalf("ParseNARInfo accepted an incomplete narinfo: %+v", ni)
		}
		if !slices.IsSorted(ni.References) || len(slices.Compact(slices.Clone(ni.References))) != len(ni.References) {
			t.Fatalf("References %v are not sorted and unique", ni.References)
		}
		text := ni.String()
		back, err := ParseNARInfo(store.DefaultDir, []byte(text))
		if err != nil {
			t.Fatalf("ParseNARInfo(String()) = %v\n%s", err, text)
		}
		want := *ni
		want.Sigs = sortedUnique(ni.Sigs)
		if len(want.Sigs) == 0 {
			want.Sigs = nil
		}
		if len(back.Sigs) == 0 {
			back.Sigs = nil
		}
		if !reflect.DeepEqual(back, &want) {
			t.Fatalf("String() reads back differently:\n%+v\n%+v\n%s", &want, back, text)
		}
		if again := back.String(); again != text {
			t.Fatalf("String() is not stable:\n%s\n%s", text, again)
		}
		if back.Fingerprint() != ni.Fingerprint() {
			t.Fatalf("the fingerprint changed in a round trip")
		}
		if ni.check(store.DefaultDir) == nil {
			if rel, err := narPath(ni.URL); err == nil {
				checkInCache(t, ni.URL, rel)
			}
		}
		if ni.ValidSignatures(keys) > 0 {
			orig, ok := signed[ni.StorePath]
			if !ok {
				t.Fatalf("a fixture signature verifies for %s, which the key never signed:\n%s", ni.StorePath, data)
			}
			if !ni.NARHash.Equal(orig.NARHash) || ni.NARSize != orig.NARSize || !slices.Equal(ni.References, orig.References) {
				t.Fatalf("a signature of %s verifies for changed fields:\n%s", ni.StorePath, data)
			}
		}
	})
}

// checkInCache fails unless rel, the cache-relative path narPath made of
// a narinfo URL u, names a file below the cache's root in a file cache,
// and a URL on the cache's own host in an HTTP cache.
func checkInCache(t *testing.T, u, rel string) {
	t.Helper()
	const root = "/srv/cache"
	if j := filepath.Join(root, filepath.FromSlash(rel)); !strings.HasPrefix(j, root+"/") {
		t.Fatalf("narPath(%q) = %q, which leaves the cache as %q", u, rel, j)
	}
	for _, seg := range strings.Split(rel, "/") {
		if seg == ".." || seg == "." || seg == "" {
			t.Fatalf("narPath(%q) = %q, with segment %q", u, rel, seg)
		}
	}
	c := &httpCache{base: "https://cache.example/prefix"}
	resolved, err := c.narURL(u)
	if err != nil {
		t.Fatalf("narURL(%q) = %v, though narPath accepted it", u, err)
	}
	pu, err := url.Parse(resolved)
	// The host may normalise the path (%2e%2e) as it likes; what a
	// relative URL must never do is reach another host. The NAR is
	// checked against the signed hash wherever it comes from.
	if err != nil || pu.Scheme != "https" || pu.Host != "cache.example" || !strings.HasPrefix(pu.Path, "/prefix/") {
		t.Fatalf("narURL(%q) = %q, outside the cache (%v)", u, resolved, err)
	}
}

// FuzzNARPath checks narPath, which guards file caches against narinfo
// URLs that would read outside them: what it accepts is a clean relative
// path below the cache, for files and HTTP alike.
func FuzzNARPath(f *testing.F) {
	for _, s := range []string{
		"nar/1a4ynd9534wlwrsmdg6lqjylji0c2kli8q7rdhj03g1vag0bczh2.nar.xz", "../x", "nar/../../x", "/etc/shadow",
		"nar/./x", "nar//x", "nar\\..\\x", "file:///etc/shadow", "//evil.example/x", "nar/x?y", "nar/x#y", "nar/%2e%2e/x",
		"c:x", "nar/x\x00", ".", "..", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, u string) {
		rel, err := narPath(u)
		if err != nil {
			return
		}
		if rel != u {
			t.Fatalf("narPath(%q) = %q, want the URL itself", u, rel)
		}
		checkInCache(t, u, rel)
	})
}
