//go:build linux

package sandbox

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// This file reads a fixed output's declared hash, for builtin:fetchurl's
// hashed mirrors. Package store has the full hash type; the sandbox
// depends on nothing of ours but store/nar, and needs only this much.

// hashSizes are the digest sizes in bytes of the hash algorithms of Nix.
var hashSizes = map[string]int{"md5": 16, "sha1": 20, "sha256": 32, "sha512": 64}

// nixBase32Alphabet is the alphabet of Nix's base-32 (no e, o, u, t).
const nixBase32Alphabet = "0123456789abcdfghijklmnpqrsvwxyz"

// hashedMirrorPath returns "<algo>/<base16 digest>", where a hashed mirror
// keeps a file, from a derivation's outputHashAlgo and outputHash. As in
// Nix, the hash may be SRI ("sha256-<base64>"), "<algo>:<digest>" or a
// bare digest of the given algorithm, in base16, Nix's base-32 or base64.
func hashedMirrorPath(algo, hash string) (string, error) {
	digest := hash
	if a, rest, ok := strings.Cut(hash, "-"); ok && hashSizes[a] > 0 {
		if algo != "" && algo != a {
			return "", fmt.Errorf("hash '%s' should have type '%s'", hash, algo)
		}
		b, err := base64.StdEncoding.DecodeString(rest)
		if err != nil || len(b) != hashSizes[a] {
			return "", fmt.Errorf("invalid SRI hash '%s'", hash)
		}
		return a + "/" + hex.EncodeToString(b), nil
	}
	if a, rest, ok := strings.Cut(hash, ":"); ok {
		if algo != "" && algo != a {
			return "", fmt.Errorf("hash '%s' should have type '%s'", hash, algo)
		}
		algo, digest = a, rest
	}
	size := hashSizes[algo]
	if size == 0 {
		return "", fmt.Errorf("unknown hash algorithm '%s'", algo)
	}
	var b []byte
	var err error
	switch len(digest) {
	case 2 * size:
		b, err = hex.DecodeString(digest)
	case (size*8-1)/5 + 1:
		b, err = decodeNixBase32(digest, size)
	case base64.StdEncoding.EncodedLen(size):
		b, err = base64.StdEncoding.DecodeString(digest)
	default:
		err = fmt.Errorf("hash '%s' has wrong length for hash type '%s'", digest, algo)
	}
	if err != nil {
		return "", err
	}
	return algo + "/" + hex.EncodeToString(b), nil
}

// decodeNixBase32 decodes Nix's base-32, whose first character holds the
// digest's last bits, into size bytes.
func decodeNixBase32(s string, size int) ([]byte, error) {
	out := make([]byte, size)
	for n := 0; n < len(s); n++ {
		c := s[len(s)-n-1]
		digit := strings.IndexByte(nixBase32Alphabet, c)
		if digit < 0 {
			return nil, fmt.Errorf("invalid base-32 hash '%s'", s)
		}
		b := n * 5
		i, j := b/8, uint(b%8)
		out[i] |= byte(digit << j)
		carry := digit >> (8 - j)
		if i+1 < size {
			out[i+1] |= byte(carry)
		} else if carry != 0 {
			return nil, fmt.Errorf("invalid base-32 hash '%s'", s)
		}
	}
	return out, nil
}
