package store_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/storefs/storefs/store"
)

var hashAlgos = []store.HashAlgo{store.MD5, store.SHA1, store.SHA256, store.SHA512}

// hashSeeds are the hash notations the fixtures and Nix use.
func hashSeeds() []string {
	var seeds []string
	for _, a := range hashAlgos {
		h := store.HashString(a, "hello\n")
		seeds = append(seeds, h.String(), h.SRI(), h.Base16WithAlgo(), a.String()+":"+h.Base64(), h.Base16(), h.Base32(), h.Base64())
	}
	return append(seeds, "", "sha256", "sha256:", "sha256-", ":", "-", "sha256:"+strings.Repeat("z", 52), "md5-AAAA")
}

// checkHash fails unless h is well formed and every notation of it parses
// back to it.
func checkHash(t *testing.T, h store.Hash, from string) {
	t.Helper()
	if h.Algo.Size() == 0 || len(h.Digest) != h.Algo.Size() {
		t.Fatalf("%q parsed to %s with a %d-byte digest", from, h.Algo, len(h.Digest))
	}
	for _, s := range []string{h.String(), h.SRI(), h.Base16WithAlgo(), h.Algo.String() + ":" + h.Base64()} {
		got, err := store.ParseHash(s)
		if err != nil || !got.Equal(h) {
			t.Fatalf("%q parsed to %v, whose notation %q parses to %v, %v", from, h, s, got, err)
		}
	}
	for _, s := range []string{h.Base16(), h.Base32(), h.Base64(), h.SRI()} {
		got, err := store.ParseHashAny(s, h.Algo)
		if err != nil || !got.Equal(h) {
			t.Fatalf("%q parsed to %v, whose digest %q parses to %v, %v", from, h, s, got, err)
		}
	}
}

// FuzzParseHash checks the hash parsers on any string: a hash they accept
// has the right digest length, and each of its notations (Nix's
// "<algo>:<base32>", SRI, base16, base64) parses back to it; when an
// algorithm is given, the result has it.
func FuzzParseHash(f *testing.F) {
	for _, s := range hashSeeds() {
		f.Add(s, uint8(0))
	}
	f.Fuzz(func(t *testing.T, s string, algo uint8) {
		if h, err := store.ParseHash(s); err == nil {
			checkHash(t, h, s)
		}
		a := store.HashAlgo(algo % 5) // 0: not given
		h, err := store.ParseHashAny(s, a)
		if err != nil {
			return
		}
		checkHash(t, h, s)
		if a != 0 && h.Algo != a {
			t.Fatalf("ParseHashAny(%q, %s) = a %s hash", s, a, h.Algo)
		}
	})
}

// FuzzBase32 checks nix-base32 both ways: decoding accepts only the one
// canonical encoding of each value (what it accepts encodes back to the
// same string), and encoding any bytes decodes back to them.
func FuzzBase32(f *testing.F) {
	for _, s := range []string{"", "0", "00", "zz", "4425hx5d1mc9y39llj4k4nm55i", "iwjz551fyw0cxcjgf4l6c879zabd6wpm",
		"00xyyr3fi8l6hb839bv3f7yb86yjv7xi1cgh1xnhipym4asvb4aq", strings.Repeat("z", 52), "71fc7s32zl20dc955bhghy5dvalm7ndz"} {
		f.Add(s, uint8(len(s)*5/8))
	}
	f.Fuzz(func(t *testing.T, s string, size uint8) {
		n := int(size) % 65
		if b, err := store.Base32Decode(s, n); err == nil {
			if len(b) != n {
				t.Fatalf("Base32Decode(%q, %d) gave %d bytes", s, n, len(b))
			}
			if enc := store.Base32Encode(b); enc != s {
				t.Fatalf("Base32Decode(%q, %d) = %x, which encodes as %q: two encodings of one value", s, n, b, enc)
			}
		}
		enc := store.Base32Encode([]byte(s))
		if len(enc) != store.Base32Len(len(s)) {
			t.Fatalf("Base32Encode of %d bytes has length %d, want %d", len(s), len(enc), store.Base32Len(len(s)))
		}
		for i := 0; i < len(enc); i++ {
			if !store.IsBase32(enc[i]) {
				t.Fatalf("Base32Encode(%x) = %q has a non-digit", s, enc)
			}
		}
		dec, err := store.Base32Decode(enc, len(s))
		if err != nil || string(dec) != s {
			t.Fatalf("Base32Decode(Base32Encode(%x)) = %x, %v", s, dec, err)
		}
	})
}

// FuzzParsePath checks store path parsing on any directory and string: a
// path accepted is exactly the string, lies directly in the store
// directory, has a nix-base32 hash part and a valid name, and cannot name
// anything but an entry of the backing directory; its base name and any
// file below it lead back to it.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{
		"/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox",
		"/nix/store/ylidkad964ccmaay0qrd9zdywj84gw6f-trivial.drv",
		"/nix/store/00000000000000000000000000000000-a+b-c.d_e?f=g",
		"/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-..",
		"/nix/store/../store/71fc7s32zl20dc955bhghy5dvalm7ndz-x",
		"/nix/store//71fc7s32zl20dc955bhghy5dvalm7ndz-x",
		"/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-x/../../etc",
	} {
		f.Add("/nix/store", s)
	}
	f.Add("/gnu/store", "/gnu/store/71fc7s32zl20dc955bhghy5dvalm7ndz-x")
	f.Fuzz(func(t *testing.T, dir, s string) {
		d, err := store.ParseDir(dir)
		if err != nil {
			d = store.DefaultDir
		}
		if p, err := d.ToStorePath(s); err == nil {
			if q, err := d.Parse(string(p)); err != nil || q != p {
				t.Fatalf("ToStorePath(%q) = %q, which Parse gives as %q, %v", s, p, q, err)
			}
			if c := filepath.Clean(s); c != string(p) && !strings.HasPrefix(c, string(p)+"/") {
				t.Fatalf("ToStorePath(%q) = %q, which does not hold it", s, p)
			}
		}
		p, err := d.Parse(s)
		if err != nil {
			if !errors.Is(err, store.ErrInvalidPath) {
				t.Fatalf("Parse(%q) = %v, want ErrInvalidPath", s, err)
			}
			return
		}
		if string(p) != s || p.Dir() != d || p.String() != s {
			t.Fatalf("Parse(%q) = %q in %q", s, p, p.Dir())
		}
		if string(d)+"/"+p.HashPart()+"-"+p.Name() != s {
			t.Fatalf("Parse(%q): parts %q %q %q", s, p.Dir(), p.HashPart(), p.Name())
		}
		if err := store.CheckBase(p.Base()); err != nil {
			t.Fatalf("Parse(%q) accepted base %q: %v", s, p.Base(), err)
		}
		if err := store.CheckName(p.Name()); err != nil || strings.ContainsAny(p.Name(), "/\x00") || strings.HasPrefix(p.Name(), ".") {
			t.Fatalf("Parse(%q) accepted name %q: %v", s, p.Name(), err)
		}
		const real = "/var/lib/storefs/store"
		if j := filepath.Join(real, p.Base()); filepath.Dir(j) != real || filepath.Base(j) != p.Base() {
			t.Fatalf("Parse(%q): base %q resolves to %q outside the backing directory", s, p.Base(), j)
		}
		if q, err := d.ParseBase(p.Base()); err != nil || q != p {
			t.Fatalf("ParseBase(%q) = %q, %v; want %q", p.Base(), q, err, p)
		}
		for _, below := range []string{s, s + "/", s + "/bin/x", s + "/./a/../b"} {
			if q, err := d.ToStorePath(below); err != nil || q != p {
				t.Fatalf("ToStorePath(%q) = %q, %v; want %q", below, q, err, p)
			}
		}
	})
}
