//go:build linux

package sandbox

import (
	"testing"

	"github.com/storefs/storefs/store"
)

func TestHashedMirrorPath(t *testing.T) {
	sha256 := store.HashString(store.SHA256, "hello\n")
	sha512 := store.HashString(store.SHA512, "hello\n")
	sha1 := store.HashString(store.SHA1, "hello\n")
	for _, tc := range []struct {
		name, algo, hash, want string
	}{
		{"Base16", "sha256", sha256.Base16(), "sha256/" + sha256.Base16()},
		{"NixBase32", "sha256", sha256.Base32(), "sha256/" + sha256.Base16()},
		{"Base64", "sha256", sha256.Base64(), "sha256/" + sha256.Base16()},
		{"SRI", "sha256", sha256.SRI(), "sha256/" + sha256.Base16()},
		{"SRIWithoutAlgo", "", sha512.SRI(), "sha512/" + sha512.Base16()},
		{"AlgoPrefix", "", "sha1:" + sha1.Base32(), "sha1/" + sha1.Base16()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := hashedMirrorPath(tc.algo, tc.hash)
			if err != nil || got != tc.want {
				t.Errorf("hashedMirrorPath(%q, %q) = %q, %v; want %q", tc.algo, tc.hash, got, err, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name, algo, hash string
	}{
		{"NoAlgo", "", sha256.Base16()},
		{"UnknownAlgo", "sha3", sha256.Base16()},
		{"WrongLength", "sha256", sha256.Base16()[1:]},
		{"BadBase32", "sha256", "e" + sha256.Base32()[1:]},
		{"Base32Overflow", "sha256", "z" + sha256.Base32()[1:]},
		{"SRIOfOtherAlgo", "sha512", sha256.SRI()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := hashedMirrorPath(tc.algo, tc.hash); err == nil {
				t.Errorf("hashedMirrorPath(%q, %q) = %q, want an error", tc.algo, tc.hash, got)
			}
		})
	}
}
