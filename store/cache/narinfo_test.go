package cache_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/cache"
)

func TestParseNARInfo_Fixtures(t *testing.T) {
	keys := fixtureKeys(t)
	for _, name := range fixtureCaches {
		t.Run(name, func(t *testing.T) {
			files, err := filepath.Glob(filepath.Join(fixtureCacheDir(t, name), "*.narinfo"))
			if err != nil {
				t.Fatal(err)
			}
			if len(files) < 400 {
				t.Fatalf("%d narinfo files in %s, want the 443 Nix wrote", len(files), name)
			}
			for _, f := range files {
				data, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				ni, err := cache.ParseNARInfo(store.DefaultDir, data)
				if err != nil {
					t.Fatalf("ParseNARInfo(%s) = %v, want nil", f, err)
				}
				if got := ni.String(); got != string(data) {
					t.Errorf("String() of %s =\n%s\nwant\n%s", f, got, data)
				}
				if got := filepath.Base(f); got != ni.StorePath.HashPart()+".narinfo" {
					t.Errorf("%s describes %s", f, ni.StorePath)
				}
				if got := ni.ValidSignatures(keys); got != 1 {
					t.Errorf("ValidSignatures(%s) = %d, want 1", f, got)
				}
			}
		})
	}
}

func TestNARInfo_Fingerprint(t *testing.T) {
	data := "StorePath: /nix/store/02dvcx263lli0cq4121jfdf90jp2iv0h-chain-89.drv\n" +
		"URL: nar/1a4ynd9534wlwrsmdg6lqjylji0c2kli8q7rdhj03g1vag0bczh2.nar.xz\n" +
		"Compression: xz\n" +
		"NarHash: sha256:17hk2n4rygwnhvc81kv3dmydij7xabphhxapm5c2sw76x6r9144m\n" +
		"NarSize: 768\n" +
		"References: ijxzfpdwcdyqdnmwdw47inwf4gwflqns-chain-88.drv 71fc7s32zl20dc955bhghy5dvalm7ndz-busybox\n"
	ni, err := cache.ParseNARInfo(store.DefaultDir, []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	want := "1;/nix/store/02dvcx263lli0cq4121jfdf90jp2iv0h-chain-89.drv;" +
		"sha256:17hk2n4rygwnhvc81kv3dmydij7xabphhxapm5c2sw76x6r9144m;768;" +
		"/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox,/nix/store/ijxzfpdwcdyqdnmwdw47inwf4gwflqns-chain-88.drv"
	if got := ni.Fingerprint(); got != want {
		t.Errorf("Fingerprint() =\n%s\nwant\n%s", got, want)
	}
}

// validNARInfo is a complete narinfo that the malformed cases change.
const validNARInfo = "StorePath: /nix/store/023z915q4il2a1ignka406l584flfff7-chain-20\n" +
	"URL: nar/05wfc66ygkls0kpw9rv2bxb0dkqakka9pc07xxrykczqzydl2rd7.nar.xz\n" +
	"Compression: xz\n" +
	"FileHash: sha256:05wfc66ygkls0kpw9rv2bxb0dkqakka9pc07xxrykczqzydl2rd7\n" +
	"FileSize: 192\n" +
	"NarHash: sha256:1nyd4x3kbrgd112kwxcpcp8r9sni70ws7xdvsddg9c0v3pdlq5na\n" +
	"NarSize: 192\n" +
	"References: 5q7fqmvwy98765w5xh3gj3425fy94zpr-chain-19\n" +
	"Deriver: qk91kngg24qcz9i6ns86wzihpcgjbij9-chain-20.drv\n"

func TestParseNARInfo_Malformed(t *testing.T) {
	replace := func(old, new string) string { return strings.Replace(validNARInfo, old, new, 1) }
	cases := []struct {
		name string
		data string
		want string // a part of the error
	}{
		{"empty", "", "no StorePath"},
		{"no-colon", validNARInfo + "garbage\n", "line 10 has no ':'"},
		{"no-store-path", replace("StorePath: /nix/store/023z915q4il2a1ignka406l584flfff7-chain-20\n", ""), "no StorePath"},
		{"no-url", replace("URL: nar/05wfc66ygkls0kpw9rv2bxb0dkqakka9pc07xxrykczqzydl2rd7.nar.xz\n", ""), "no URL"},
		{"empty-url", replace("URL: nar/05wfc66ygkls0kpw9rv2bxb0dkqakka9pc07xxrykczqzydl2rd7.nar.xz", "URL: "), "URL is empty"},
		{"no-nar-hash", replace("NarHash: sha256:1nyd4x3kbrgd112kwxcpcp8r9sni70ws7xdvsddg9c0v3pdlq5na\n", ""), "no NarHash"},
		{"no-nar-size", replace("NarSize: 192\n", ""), "no NarSize"},
		{"zero-nar-size", replace("NarSize: 192", "NarSize: 0"), "NarSize is 0"},
		{"store-path-elsewhere", replace("/nix/store/023z", "/gnu/store/023z"), "StorePath"},
		{"store-path-bad-hash", replace("StorePath: /nix/store/023z915q4il2a1ignka406l584flfff7", "StorePath: /nix/store/e23z915q4il2a1ignka406l584flfff7"), "invalid hash part"},
		{"nar-hash-bad", replace("NarHash: sha256:1nyd", "NarHash: sha256:xnyd"), "NarHash"},
		{"nar-hash-md5", replace("NarHash: sha256:1nyd4x3kbrgd112kwxcpcp8r9sni70ws7xdvsddg9c0v3pdlq5na", "NarHash: md5:00000000000000000000000000000000"), "is not sha256"},
		{"nar-hash-untyped", replace("NarHash: sha256:", "NarHash: "), "NarHash"},
		{"file-hash-bad", replace("FileHash: sha256:05wf", "FileHash: sha256:"), "FileHash"},
		{"nar-size-text", replace("NarSize: 192", "NarSize: lots"), "'lots' is not a size"},
		{"nar-size-negative", replace("NarSize: 192", "NarSize: -192"), "is not a size"},
		{"file-size-text", replace("FileSize: 192", "FileSize: 1e3"), "is not a size"},
		{"reference-full-path", replace("References: 5q7f", "References: /nix/store/5q7f"), "References"},
		{"reference-bad", replace("References: 5q7fqmvwy98765w5xh3gj3425fy94zpr-chain-19", "References: 5q7fqmvwy98765w5xh3gj3425fy94zpr-../x"), "References"},
		{"deriver-bad", replace("Deriver: qk91", "Deriver: ../qk91"), "Deriver"},
		{"ca-bad", validNARInfo + "CA: sha256:1nyd4x3kbrgd112kwxcpcp8r9sni70ws7xdvsddg9c0v3pdlq5na\n", "CA"},
		{"ca-text-md5", validNARInfo + "CA: text:md5:00000000000000000000000000000000\n", "sha256"},
		{"duplicate-store-path", validNARInfo + "StorePath: /nix/store/5q7fqmvwy98765w5xh3gj3425fy94zpr-chain-19\n", "given twice"},
		{"duplicate-references", validNARInfo + "References: \n", "given twice"},
		{"duplicate-nar-hash", validNARInfo + "NarHash: sha256:1nyd4x3kbrgd112kwxcpcp8r9sni70ws7xdvsddg9c0v3pdlq5na\n", "given twice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ni, err := cache.ParseNARInfo(store.DefaultDir, []byte(tc.data))
			if err == nil {
				t.Fatalf("ParseNARInfo() = %v, nil; want an error containing %q", ni, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "invalid narinfo") {
				t.Errorf("ParseNARInfo() = %v, want an 'invalid narinfo' error containing %q", err, tc.want)
			}
		})
	}
}

func TestParseNARInfo_Lenient(t *testing.T) {
	cases := []struct {
		name  string
		data  string
		check func(t *testing.T, ni *cache.NARInfo)
	}{
		{"unknown-keys", validNARInfo + "Future: something\nX-Extra: 1\n", nil},
		{"no-final-newline", strings.TrimSuffix(validNARInfo, "\n"), nil},
		{"no-compression-means-bzip2", strings.Replace(validNARInfo, "Compression: xz\n", "", 1), func(t *testing.T, ni *cache.NARInfo) {
			if ni.Compression != "bzip2" {
				t.Errorf("Compression = %q, want bzip2", ni.Compression)
			}
		}},
		{"unknown-deriver", strings.Replace(validNARInfo, "qk91kngg24qcz9i6ns86wzihpcgjbij9-chain-20.drv", "unknown-deriver", 1), func(t *testing.T, ni *cache.NARInfo) {
			if ni.Deriver != "" {
				t.Errorf("Deriver = %q, want none", ni.Deriver)
			}
		}},
		{"references-unsorted", strings.Replace(validNARInfo, "References: 5q7fqmvwy98765w5xh3gj3425fy94zpr-chain-19",
			"References: 5q7fqmvwy98765w5xh3gj3425fy94zpr-chain-19  023z915q4il2a1ignka406l584flfff7-chain-20", 1), func(t *testing.T, ni *cache.NARInfo) {
			want := []store.Path{"/nix/store/023z915q4il2a1ignka406l584flfff7-chain-20", "/nix/store/5q7fqmvwy98765w5xh3gj3425fy94zpr-chain-19"}
			if len(ni.References) != 2 || ni.References[0] != want[0] || ni.References[1] != want[1] {
				t.Errorf("References = %v, want %v", ni.References, want)
			}
		}},
		{"system-and-sigs", validNARInfo + "System: x86_64-linux\nSig: b:x\nSig: a:y\nCA: fixed:sha1:0000000000000000000000000000000000000000\n", func(t *testing.T, ni *cache.NARInfo) {
			if ni.System != "x86_64-linux" || len(ni.Sigs) != 2 {
				t.Errorf("System, Sigs = %q, %q; want x86_64-linux and two signatures", ni.System, ni.Sigs)
			}
			if !strings.Contains(ni.String(), "System: x86_64-linux\nSig: a:y\nSig: b:x\nCA: fixed:sha1:") {
				t.Errorf("String() =\n%s\nwant System, then sorted Sigs, then CA", ni.String())
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ni, err := cache.ParseNARInfo(store.DefaultDir, []byte(tc.data))
			if err != nil {
				t.Fatalf("ParseNARInfo() = %v, want nil", err)
			}
			if tc.check != nil {
				tc.check(t, ni)
			}
		})
	}
}
