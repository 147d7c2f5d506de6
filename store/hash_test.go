package store_test

import (
	"strings"
	"testing"

	"github.com/storefs/storefs/store"
)

// Vectors from Debian's nix-hash 2.8 over the bytes "hello\n".
func TestHash_Formats(t *testing.T) {
	data := []byte("hello\n")
	cases := []struct {
		name   string
		algo   store.HashAlgo
		base16 string
		base32 string
	}{
		{"md5", store.MD5, "", "4425hx5d1mc9y39llj4k4nm55i"},
		{"sha1", store.SHA1, "", "iwjz551fyw0cxcjgf4l6c879zabd6wpm"},
		{"sha256", store.SHA256, "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03", "00xyyr3fi8l6hb839bv3f7yb86yjv7xi1cgh1xnhipym4asvb4aq"},
		{"sha512", store.SHA512, "", "0lrc0dwnvipqviibf7qfm1y492qvjwb1zhkcyi05cndmva1mr5gjcgrnz1x36djmk0sfg8djd2n0qv68vib2jg590mwznar9jcjphp7"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := store.HashBytes(tc.algo, data)
			if got := h.Base32(); got != tc.base32 {
				t.Errorf("Base32() = %s, want %s", got, tc.base32)
			}
			if tc.base16 != "" && h.Base16() != tc.base16 {
				t.Errorf("Base16() = %s, want %s", h.Base16(), tc.base16)
			}
			// Every notation parses back to the same hash.
			for _, s := range []string{
				h.String(), h.SRI(), h.Base16WithAlgo(),
				tc.name + ":" + h.Base64(),
			} {
				got, err := store.ParseHash(s)
				if err != nil || !got.Equal(h) {
					t.Errorf("ParseHash(%q) = %v, %v; want %v", s, got, err, h)
				}
			}
			for _, s := range []string{h.Base16(), h.Base32(), h.Base64(), h.SRI()} {
				got, err := store.ParseHashAny(s, tc.algo)
				if err != nil || !got.Equal(h) {
					t.Errorf("ParseHashAny(%q, %s) = %v, %v; want %v", s, tc.algo, got, err, h)
				}
			}
		})
	}
}

// TestParseHash_UpperCaseBase16: Nix reads base-16 digits in either case.
func TestParseHash_UpperCaseBase16(t *testing.T) {
	h := store.HashString(store.SHA256, "x")
	got, err := store.ParseHash("sha256:" + strings.ToUpper(h.Base16()))
	if err != nil || !got.Equal(h) {
		t.Errorf("ParseHash(upper-case base16 of %v) = %v, %v; want %v", h, got, err, h)
	}
}

func TestParseHash_Invalid(t *testing.T) {
	for _, s := range []string{
		"", "sha256", "sha256:", "sha256:xyz", "sha3:00", "sha256-!!!!",
		"sha256:" + strings.Repeat("e", 52), // 'e' is not a nix-base32 digit
		"sha256:" + strings.Repeat("z", 52), // overflows 256 bits
		"sha256:" + strings.Repeat("g", 64), // not hex
		"md5-" + store.HashString(store.SHA256, "x").Base64(),
	} {
		if h, err := store.ParseHash(s); err == nil {
			t.Errorf("ParseHash(%q) = %v, want an error", s, h)
		}
	}
	if _, err := store.ParseHashAny("sha1:iwjz551fyw0cxcjgf4l6c879zabd6wpm", store.SHA256); err == nil {
		t.Errorf("ParseHashAny with a conflicting algorithm = nil error, want one")
	}
}

func TestBase32_RoundTrip(t *testing.T) {
	for n := 0; n <= 64; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*37 + n)
		}
		s := store.Base32Encode(b)
		if len(s) != store.Base32Len(n) {
			t.Fatalf("len(Base32Encode(%d bytes)) = %d, want %d", n, len(s), store.Base32Len(n))
		}
		got, err := store.Base32Decode(s, n)
		if err != nil || string(got) != string(b) {
			t.Fatalf("Base32Decode(Base32Encode(%x)) = %x, %v", b, got, err)
		}
	}
}
