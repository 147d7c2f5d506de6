package store

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
)

// HashAlgo is a hash algorithm Nix knows.
type HashAlgo uint8

// The hash algorithms, named as Nix names them.
const (
	MD5 HashAlgo = iota + 1
	SHA1
	SHA256
	SHA512
)

// ParseHashAlgo parses "md5", "sha1", "sha256" or "sha512".
func ParseHashAlgo(s string) (HashAlgo, error) {
	switch s {
	case "md5":
		return MD5, nil
	case "sha1":
		return SHA1, nil
	case "sha256":
		return SHA256, nil
	case "sha512":
		return SHA512, nil
	}
	return 0, fmt.Errorf("unknown hash algorithm '%s'", s)
}

func (a HashAlgo) String() string {
	switch a {
	case MD5:
		return "md5"
	case SHA1:
		return "sha1"
	case SHA256:
		return "sha256"
	case SHA512:
		return "sha512"
	}
	return fmt.Sprintf("HashAlgo(%d)", uint8(a))
}

// Size is the digest length in bytes.
func (a HashAlgo) Size() int {
	switch a {
	case MD5:
		return md5.Size
	case SHA1:
		return sha1.Size
	case SHA256:
		return sha256.Size
	case SHA512:
		return sha512.Size
	}
	return 0
}

// New returns a running hash of this algorithm.
func (a HashAlgo) New() hash.Hash {
	switch a {
	case MD5:
		return md5.New()
	case SHA1:
		return sha1.New()
	case SHA256:
		return sha256.New()
	case SHA512:
		return sha512.New()
	}
	panic("store: invariant broken: hash of unknown algorithm " + a.String())
}

// Hash is a digest together with its algorithm. The zero Hash is "no hash".
type Hash struct {
	Algo   HashAlgo
	Digest []byte
}

// IsZero reports whether h is the zero Hash.
func (h Hash) IsZero() bool { return h.Algo == 0 }

// Equal reports whether two hashes have the same algorithm and digest.
func (h Hash) Equal(o Hash) bool { return h.Algo == o.Algo && bytes.Equal(h.Digest, o.Digest) }

// HashBytes hashes b with algorithm a.
func HashBytes(a HashAlgo, b []byte) Hash {
	w := a.New()
	w.Write(b)
	return Hash{Algo: a, Digest: w.Sum(nil)}
}

// HashString hashes s with algorithm a.
func HashString(a HashAlgo, s string) Hash { return HashBytes(a, []byte(s)) }

// Base16 is the lowercase hex digest.
func (h Hash) Base16() string { return hex.EncodeToString(h.Digest) }

// Base32 is the nix-base32 digest.
func (h Hash) Base32() string { return Base32Encode(h.Digest) }

// Base64 is the standard (padded) base64 digest.
func (h Hash) Base64() string { return base64.StdEncoding.EncodeToString(h.Digest) }

// SRI is the Subresource Integrity form, "sha256-<base64>".
func (h Hash) SRI() string { return h.Algo.String() + "-" + h.Base64() }

// String is Nix's usual printed form, "<algo>:<nix-base32>", as in narinfo
// files and the database of Nix.
func (h Hash) String() string {
	if h.IsZero() {
		return ""
	}
	return h.Algo.String() + ":" + h.Base32()
}

// Base16WithAlgo is "<algo>:<hex>", the form used in fixed-output fingerprints.
func (h Hash) Base16WithAlgo() string { return h.Algo.String() + ":" + h.Base16() }

// ParseHash parses a hash that names its algorithm: "<algo>:<digest>" with
// the digest in base16, nix-base32 or base64, or SRI "<algo>-<base64>".
func ParseHash(s string) (Hash, error) {
	if i := strings.IndexByte(s, ':'); i >= 0 {
		algo, err := ParseHashAlgo(s[:i])
		if err != nil {
			return Hash{}, fmt.Errorf("parsing hash '%s': %w", s, err)
		}
		return ParseHashDigest(algo, s[i+1:])
	}
	if i := strings.IndexByte(s, '-'); i >= 0 {
		algo, err := ParseHashAlgo(s[:i])
		if err != nil {
			return Hash{}, fmt.Errorf("parsing hash '%s': %w", s, err)
		}
		return parseBase64(algo, s[i+1:], s)
	}
	return Hash{}, fmt.Errorf("hash '%s' does not include a type", s)
}

// ParseHashAny parses a hash whose algorithm may be given separately (as in
// a derivation's outputHash). If s names an algorithm it must agree with
// algo; algo may be 0 when s names one.
func ParseHashAny(s string, algo HashAlgo) (Hash, error) {
	if strings.ContainsAny(s, ":") || (strings.Contains(s, "-") && algo == 0) || isSRIPrefix(s) {
		h, err := ParseHash(s)
		if err != nil {
			return Hash{}, err
		}
		if algo != 0 && h.Algo != algo {
			return Hash{}, fmt.Errorf("hash '%s' should have type '%s'", s, algo)
		}
		return h, nil
	}
	if algo == 0 {
		return Hash{}, fmt.Errorf("hash '%s' does not include a type, nor is the type otherwise known from context", s)
	}
	return ParseHashDigest(algo, s)
}

func isSRIPrefix(s string) bool {
	for _, p := range []string{"md5-", "sha1-", "sha256-", "sha512-"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// ParseHashDigest parses a bare digest of algorithm algo; its encoding is
// told by its length, as Nix does.
func ParseHashDigest(algo HashAlgo, s string) (Hash, error) {
	size := algo.Size()
	if size == 0 {
		return Hash{}, fmt.Errorf("unknown hash algorithm %s", algo)
	}
	switch len(s) {
	case hex.EncodedLen(size):
		d, err := hex.DecodeString(s) // either case, as Nix
		if err != nil {
			return Hash{}, fmt.Errorf("invalid base-16 hash '%s'", s)
		}
		return Hash{Algo: algo, Digest: d}, nil
	case Base32Len(size):
		d, err := Base32Decode(s, size)
		if err != nil {
			return Hash{}, fmt.Errorf("invalid base-32 hash '%s'", s)
		}
		return Hash{Algo: algo, Digest: d}, nil
	case base64.StdEncoding.EncodedLen(size):
		return parseBase64(algo, s, s)
	}
	return Hash{}, fmt.Errorf("hash '%s' has wrong length for hash type '%s'", s, algo)
}

func parseBase64(algo HashAlgo, s, whole string) (Hash, error) {
	d, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return Hash{}, fmt.Errorf("invalid base-64 hash '%s'", whole)
	}
	if len(d) != algo.Size() {
		return Hash{}, fmt.Errorf("hash '%s' has wrong length for hash type '%s'", whole, algo)
	}
	return Hash{Algo: algo, Digest: d}, nil
}

// CompressHash folds a digest into size bytes by XOR, as Nix does to make
// the 160-bit hash part of a store path from a SHA-256.
func CompressHash(d []byte, size int) []byte {
	out := make([]byte, size)
	for i, b := range d {
		out[i%size] ^= b
	}
	return out
}
