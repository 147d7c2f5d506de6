package cache_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/cache"
)

func TestGenerateKey_RoundTrip(t *testing.T) {
	sk, err := cache.GenerateKey("test-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := cache.ParseSecretKey(sk.String() + "\n")
	if err != nil {
		t.Fatalf("ParseSecretKey(%s) = %v", sk.Name, err)
	}
	if parsed.Name != "test-1" || !bytes.Equal(parsed.Key, sk.Key) {
		t.Errorf("ParseSecretKey(String()) = %s, want the key back", parsed.Name)
	}
	pub, err := cache.ParsePublicKey(sk.PublicKey().String())
	if err != nil {
		t.Fatalf("ParsePublicKey = %v", err)
	}
	keys := cache.PublicKeys{pub.Name: pub.Key}
	sig := sk.Sign("data")
	if !strings.HasPrefix(sig, "test-1:") {
		t.Errorf("Sign() = %s, want it to start with the key name", sig)
	}
	if !keys.Verify("data", sig) {
		t.Errorf("Verify(data, Sign(data)) = false, want true")
	}
	if keys.Verify("other data", sig) {
		t.Errorf("Verify(other data, Sign(data)) = true, want false")
	}
	other, _ := cache.GenerateKey("test-1", nil)
	if keys.Verify("data", other.Sign("data")) {
		t.Errorf("Verify of another key with the same name = true, want false")
	}
	if (cache.PublicKeys{}).Verify("data", sig) {
		t.Errorf("Verify with no trusted keys = true, want false")
	}
}

func TestParseKey_Errors(t *testing.T) {
	sk, err := cache.GenerateKey("k", nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := sk.PublicKey().String()
	for _, s := range []string{"", "k", ":" + strings.SplitN(pub, ":", 2)[1], "k:not base64!", "k:AAAA", sk.String()} {
		if _, err := cache.ParsePublicKey(s); err == nil {
			t.Errorf("ParsePublicKey(%.20q) = nil, want an error", s)
		}
	}
	for _, s := range []string{"", "k:AAAA", pub} {
		if _, err := cache.ParseSecretKey(s); err == nil {
			t.Errorf("ParseSecretKey(%.20q) = nil, want an error", s)
		}
	}
	// A secret key whose second half is not its public key.
	broken := append(bytes.Clone(sk.Key[:32]), make([]byte, 32)...)
	if _, err := cache.ParseSecretKey((&cache.SecretKey{Name: "k", Key: broken}).String()); err == nil {
		t.Errorf("ParseSecretKey(mismatched halves) = nil, want an error")
	}
	if _, err := cache.GenerateKey("a:b", nil); err == nil {
		t.Errorf("GenerateKey(a:b) = nil, want an error")
	}
	if _, err := cache.ParsePublicKeys([]string{pub, "bad"}); err == nil {
		t.Errorf("ParsePublicKeys with a bad key = nil, want an error")
	}
}

func TestNARInfo_Sign(t *testing.T) {
	ni, err := cache.ParseNARInfo(store.DefaultDir, []byte(validNARInfo))
	if err != nil {
		t.Fatal(err)
	}
	sk, _ := cache.GenerateKey("mine-1", nil)
	keys := cache.PublicKeys{sk.Name: sk.PublicKey().Key}
	if ni.IsTrusted(keys) {
		t.Fatalf("IsTrusted() of an unsigned narinfo = true")
	}
	ni.Sign(sk)
	ni.Sign(sk)
	if len(ni.Sigs) != 1 || !ni.IsTrusted(keys) {
		t.Errorf("after Sign twice: Sigs = %q, IsTrusted = %v; want one signature that verifies", ni.Sigs, ni.IsTrusted(keys))
	}
	back, err := cache.ParseNARInfo(store.DefaultDir, []byte(ni.String()))
	if err != nil || !back.IsTrusted(keys) {
		t.Errorf("the signed narinfo read back: %v, trusted %v", err, back != nil && back.IsTrusted(keys))
	}
}

// TestSignatureCheckingCache_Refusals copies a fixture narinfo and its
// NAR into a new cache and changes it: each change must be refused.
func TestSignatureCheckingCache_Refusals(t *testing.T) {
	src := fixtureCacheDir(t, "cache-zstd")
	const hashPart = "023z915q4il2a1ignka406l584flfff7"
	orig, err := os.ReadFile(filepath.Join(src, hashPart+".narinfo"))
	if err != nil {
		t.Fatal(err)
	}
	wrongKey, _ := cache.GenerateKey("peer-test-cache-1", nil)
	cases := []struct {
		name    string
		keys    cache.PublicKeys
		narinfo string
		refused bool
	}{
		{"Signed", fixtureKeys(t), string(orig), false},
		{"WrongKey", cache.PublicKeys{"peer-test-cache-1": wrongKey.PublicKey().Key}, string(orig), true},
		{"NoKeys", cache.PublicKeys{}, string(orig), true},
		{"Unsigned", fixtureKeys(t), dropLines(string(orig), "Sig: "), true},
		{"TamperedNarHash", fixtureKeys(t), strings.Replace(string(orig),
			"NarHash: sha256:1nyd4x3kbrgd112kwxcpcp8r9sni70ws7xdvsddg9c0v3pdlq5na",
			"NarHash: sha256:0nyd4x3kbrgd112kwxcpcp8r9sni70ws7xdvsddg9c0v3pdlq5na", 1), true},
		{"TamperedReferences", fixtureKeys(t), strings.Replace(string(orig), "References: 5q7fqmvwy98765w5xh3gj3425fy94zpr-chain-19", "References: ", 1), true},
		{"TamperedURL", fixtureKeys(t), strings.Replace(string(orig), "URL: nar/0", "URL: nar/1", 1), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, hashPart+".narinfo"), []byte(tc.narinfo), 0o644); err != nil {
				t.Fatal(err)
			}
			c := cache.NewSignatureCheckingCache(openFileCache(t, dir, nil), tc.keys)
			ni, err := c.NARInfo(context.Background(), hashPart)
			if !tc.refused {
				if err != nil {
					t.Fatalf("NARInfo() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, cache.ErrUntrusted) {
				t.Fatalf("NARInfo() = %v, %v; want ErrUntrusted", ni, err)
			}
			want := "the substitute for '/nix/store/023z915q4il2a1ignka406l584flfff7-chain-20' from 'file://" + dir +
				"' is not signed by any of the keys in 'trusted-public-keys'"
			if err.Error() != want {
				t.Errorf("NARInfo() error =\n%v\nwant\n%s", err, want)
			}
		})
	}
}

// TestSignatureCheckingCache_ContentAddressed: an unsigned narinfo whose
// content address gives its path is trusted, as in Nix; one whose
// content address gives another path is not.
func TestSignatureCheckingCache_ContentAddressed(t *testing.T) {
	src := fixtureCacheDir(t, "cache-zstd")
	nis := fixtureNARInfos(t, "cache-zstd")
	var ca *cache.NARInfo
	for _, ni := range nis {
		if strings.HasPrefix(ni.CA, "text:") && len(ni.References) > 0 {
			ca = ni
			break
		}
	}
	if ca == nil {
		t.Fatal("no text content-addressed path with references in the fixtures")
	}
	hashPart := ca.StorePath.HashPart()
	orig, err := os.ReadFile(filepath.Join(src, hashPart+".narinfo"))
	if err != nil {
		t.Fatal(err)
	}
	unsigned := dropLines(string(orig), "Sig: ")
	cases := []struct {
		name    string
		narinfo string
		refused bool
	}{
		{"UnsignedCA", unsigned, false},
		{"UnsignedCAWrongReferences", strings.Replace(unsigned, "References: ", "References: 023z915q4il2a1ignka406l584flfff7-chain-20 ", 1), true},
		{"UnsignedCAWrongHash", strings.Replace(unsigned, ca.CA, "text:sha256:0000000000000000000000000000000000000000000000000000", 1), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, hashPart+".narinfo"), []byte(tc.narinfo), 0o644); err != nil {
				t.Fatal(err)
			}
			c := cache.NewSignatureCheckingCache(openFileCache(t, dir, nil), fixtureKeys(t))
			_, err := c.NARInfo(context.Background(), hashPart)
			if tc.refused != errors.Is(err, cache.ErrUntrusted) {
				t.Errorf("NARInfo() = %v, want refused = %v", err, tc.refused)
			}
		})
	}
}

func dropLines(s, prefix string) string {
	var out []string
	for _, l := range strings.SplitAfter(s, "\n") {
		if !strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}
