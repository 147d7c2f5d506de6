package store

import (
	"fmt"
)

// base32Alphabet is Nix's base-32 alphabet: digits and lowercase letters
// without e, o, u and t (to avoid accidental words).
const base32Alphabet = "0123456789abcdfghijklmnpqrsvwxyz"

// base32Index maps a byte to its digit value, or 0xff if it is not a digit.
var base32Index = func() [256]byte {
	var t [256]byte
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < len(base32Alphabet); i++ {
		t[base32Alphabet[i]] = byte(i)
	}
	return t
}()

// Base32Len returns the length of the nix-base32 encoding of n bytes.
func Base32Len(n int) int {
	if n == 0 {
		return 0
	}
	return (n*8-1)/5 + 1
}

// Base32Encode encodes b in Nix's base-32. Unlike RFC 4648, Nix emits the
// digits starting from the most significant end of a little-endian number,
// so the last input byte influences the first character.
func Base32Encode(b []byte) string {
	n := Base32Len(len(b))
	out := make([]byte, n)
	for i := n - 1; i >= 0; i-- {
		bit := i * 5
		j, k := bit/8, uint(bit%8)
		c := b[j] >> k
		if j+1 < len(b) {
			c |= b[j+1] << (8 - k)
		}
		out[n-1-i] = base32Alphabet[c&0x1f]
	}
	return string(out)
}

// Base32Decode decodes a nix-base32 string into size bytes.
func Base32Decode(s string, size int) ([]byte, error) {
	if len(s) != Base32Len(size) {
		return nil, fmt.Errorf("nix-base32 string %q has length %d, want %d", s, len(s), Base32Len(size))
	}
	out := make([]byte, size)
	for i := 0; i < len(s); i++ {
		d := base32Index[s[len(s)-1-i]]
		if d == 0xff {
			return nil, fmt.Errorf("invalid character %q in nix-base32 string %q", s[len(s)-1-i], s)
		}
		bit := i * 5
		j, k := bit/8, uint(bit%8)
		out[j] |= d << k
		carry := d >> (8 - k)
		if j+1 < size {
			out[j+1] |= carry
		} else if carry != 0 {
			return nil, fmt.Errorf("nix-base32 string %q does not fit in %d bytes", s, size)
		}
	}
	return out, nil
}

// IsBase32 reports whether c is a nix-base32 digit.
func IsBase32(c byte) bool { return base32Index[c] != 0xff }
