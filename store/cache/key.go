package cache

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
)

// SecretKey is an ed25519 key that signs narinfos, with the name that
// its signatures carry. Its text form is Nix's, "<name>:<base64 of the
// 64-byte key>" (libsodium's secret key: seed, then public key), as
// `nix-store --generate-binary-cache-key` writes it.
type SecretKey struct {
	Name string
	Key  ed25519.PrivateKey
}

// PublicKey verifies the signatures of one SecretKey. Its text form is
// "<name>:<base64 of the 32-byte key>", as trusted-public-keys lists
// them.
type PublicKey struct {
	Name string
	Key  ed25519.PublicKey
}

// GenerateKey makes a new key pair named name, reading randomness from
// rand (nil means crypto/rand).
func GenerateKey(name string, random io.Reader) (*SecretKey, error) {
	if err := checkKeyName(name); err != nil {
		return nil, err
	}
	if random == nil {
		random = rand.Reader
	}
	_, priv, err := ed25519.GenerateKey(random)
	if err != nil {
		return nil, fmt.Errorf("generating key '%s': %w", name, err)
	}
	return &SecretKey{Name: name, Key: priv}, nil
}

// ParseSecretKey parses "<name>:<base64>". White space around it (a
// trailing newline of a key file) is ignored.
func ParseSecretKey(s string) (*SecretKey, error) {
	name, key, err := parseKey(s, ed25519.PrivateKeySize, "secret")
	if err != nil {
		return nil, err
	}
	// The second half of a libsodium secret key is its public key; a key
	// whose halves disagree would make signatures no one can verify.
	derived := ed25519.NewKeyFromSeed(key[:ed25519.SeedSize])
	if !bytes.Equal(derived, key) {
		return nil, fmt.Errorf("secret key '%s' is not valid: its public half does not match", name)
	}
	return &SecretKey{Name: name, Key: derived}, nil
}

// ParsePublicKey parses "<name>:<base64>", ignoring white space around it.
func ParsePublicKey(s string) (*PublicKey, error) {
	name, key, err := parseKey(s, ed25519.PublicKeySize, "public")
	if err != nil {
		return nil, err
	}
	return &PublicKey{Name: name, Key: ed25519.PublicKey(key)}, nil
}

func parseKey(s string, size int, kind string) (string, []byte, error) {
	s = strings.TrimSpace(s)
	name, b64, ok := strings.Cut(s, ":")
	if !ok || name == "" {
		return "", nil, fmt.Errorf("%s key is not valid: no '<name>:' before the key", kind)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(key) != size {
		return "", nil, fmt.Errorf("%s key '%s' is not valid: want %d bytes in base64", kind, name, size)
	}
	return name, key, nil
}

func checkKeyName(name string) error {
	if name == "" || strings.ContainsAny(name, ": \t\n") {
		return fmt.Errorf("key name '%s' must be non-empty, without ':' or white space", name)
	}
	return nil
}

// String is the key in Nix's text form. It is the secret: print it only
// to a key file.
func (sk *SecretKey) String() string {
	return sk.Name + ":" + base64.StdEncoding.EncodeToString(sk.Key)
}

// PublicKey returns the key that verifies sk's signatures.
func (sk *SecretKey) PublicKey() *PublicKey {
	return &PublicKey{Name: sk.Name, Key: sk.Key.Public().(ed25519.PublicKey)}
}

// Sign signs data and returns the signature "<name>:<base64>".
func (sk *SecretKey) Sign(data string) string {
	return sk.Name + ":" + base64.StdEncoding.EncodeToString(ed25519.Sign(sk.Key, []byte(data)))
}

// String is the key in Nix's text form.
func (pk *PublicKey) String() string {
	return pk.Name + ":" + base64.StdEncoding.EncodeToString(pk.Key)
}

// PublicKeys are the trusted keys (trusted-public-keys), by name.
type PublicKeys map[string]ed25519.PublicKey

// ParsePublicKeys parses a list of public keys, as trusted-public-keys
// gives them. A key that does not parse is an error, as in Nix.
func ParsePublicKeys(keys []string) (PublicKeys, error) {
	out := PublicKeys{}
	for _, s := range keys {
		pk, err := ParsePublicKey(s)
		if err != nil {
			return nil, err
		}
		out[pk.Name] = pk.Key
	}
	return out, nil
}

// Verify reports whether sig ("<name>:<base64>") is a signature of data
// by a key in ks. A signature of an unknown key, or a malformed one,
// does not verify.
func (ks PublicKeys) Verify(data, sig string) bool {
	name, b64, ok := strings.Cut(sig, ":")
	if !ok {
		return false
	}
	key, ok := ks[name]
	if !ok {
		return false
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(key, []byte(data), raw)
}
