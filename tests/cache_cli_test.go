package tests

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// leafPath is a path of the fixture caches with no references.
const leafPath = "/nix/store/ib5ymw26pl1q7iw9qn4f4z7d730pkw69-leaf"

// fixtureCacheCopy makes a file:// cache from the xz fixture cache that
// Nix wrote: its NARs linked, its narinfos copied through edit (nil:
// unchanged), and nix-cache-info replaced by info. It returns the URL.
func fixtureCacheCopy(t *testing.T, info string, edit func(narinfo string) string) string {
	t.Helper()
	src := filepath.Join(fixturesDir(t), "cache-xz")
	dir := filepath.Join(t.TempDir(), "cache")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(src, "nar"), filepath.Join(dir, "nar")); err != nil {
		t.Fatal(err)
	}
	narinfos, err := filepath.Glob(filepath.Join(src, "*.narinfo"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range narinfos {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		if edit != nil {
			text = edit(text)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "nix-cache-info"), []byte(info), 0o644); err != nil {
		t.Fatal(err)
	}
	return "file://" + dir
}

// trustFixtureKey is the option that trusts the key of the fixture caches.
func trustFixtureKey(t *testing.T) []string {
	t.Helper()
	key, err := os.ReadFile(filepath.Join(fixturesDir(t), "cache-public.key"))
	if err != nil {
		t.Fatal(err)
	}
	return []string{"--option", "trusted-public-keys", strings.TrimSpace(string(key))}
}

// deadURL is the URL of an HTTP server on loopback that is gone:
// connections to it are refused.
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// TestCLI_SubstituterPriority: of several substituters that have a path,
// the one whose nix-cache-info (or priority= parameter) gives the lowest
// Priority is used, wherever it is in the list; a dead one among them
// fails nothing.
func TestCLI_SubstituterPriority(t *testing.T) {
	a := fixtureCacheCopy(t, "StoreDir: /nix/store\nPriority: 60\n", nil)
	b := fixtureCacheCopy(t, "StoreDir: /nix/store\nPriority: 10\n", nil)
	dead := deadURL(t)
	cases := []struct {
		name         string
		substituters string
		want         string
	}{
		{"LowestLast", a + " " + b, b},
		{"LowestFirst", b + " " + a, b},
		{"URLParameter", a + "?priority=5 " + b, a},
		{"AmongDead", dead + " " + a + " " + b, b},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := newInstance(t)
			args := append(trustFixtureKey(t), "--option", "substituters", tc.substituters,
				"--option", "download-attempts", "1", "realise", leafPath)
			r := in.run("", args...)
			if r.code != 0 || r.stdout != leafPath+"\n" {
				t.Fatalf("exit %d, stdout %q, stderr:\n%s", r.code, r.stdout, r.stderr)
			}
			if want := "copying path '" + leafPath + "' from '" + tc.want + "'"; !strings.Contains(r.stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
			}
		})
	}
}

// TestCLI_OtherStoreDir: a cache whose nix-cache-info is for another
// store directory is refused, in Nix's words, by realise and copy
// --from, even though its narinfos name paths of ours; among other
// substituters it fails only itself.
func TestCLI_OtherStoreDir(t *testing.T) {
	gnu := fixtureCacheCopy(t, "StoreDir: /gnu/store\nPriority: 10\n", nil)
	good := fixtureCacheCopy(t, "StoreDir: /nix/store\nPriority: 40\n", nil)
	want := "binary cache '" + gnu + "' is for Nix stores with prefix '/gnu/store', not '/nix/store'"

	t.Run("Realise", func(t *testing.T) {
		in := newInstance(t)
		r := in.run("", append(trustFixtureKey(t), "--option", "substituters", gnu, "realise", leafPath)...)
		if r.code == 0 || !strings.Contains(r.stderr, want) {
			t.Errorf("exit %d, want a failure saying %q; stderr:\n%s", r.code, want, r.stderr)
		}
		if r := in.run("", "path-info", leafPath); r.code == 0 {
			t.Errorf("%s is valid after the cache was refused", leafPath)
		}
	})
	t.Run("CopyFrom", func(t *testing.T) {
		in := newInstance(t)
		r := in.run("", append(trustFixtureKey(t), "copy", "--from", gnu, leafPath)...)
		if r.code == 0 || !strings.Contains(r.stderr, want) {
			t.Errorf("exit %d, want a failure saying %q; stderr:\n%s", r.code, want, r.stderr)
		}
		if r := in.run("", "path-info", leafPath); r.code == 0 {
			t.Errorf("%s is valid after the cache was refused", leafPath)
		}
	})
	t.Run("AmongOthers", func(t *testing.T) {
		// The refused cache comes first by priority; the next one serves.
		in := newInstance(t)
		r := in.run("", append(trustFixtureKey(t), "--option", "substituters", gnu+" "+good, "realise", leafPath)...)
		if r.code != 0 || r.stdout != leafPath+"\n" {
			t.Fatalf("exit %d, stdout %q, stderr:\n%s", r.code, r.stdout, r.stderr)
		}
		if copying := "copying path '" + leafPath + "' from '" + good + "'"; !strings.Contains(r.stderr, copying) {
			t.Errorf("stderr lacks %q:\n%s", copying, r.stderr)
		}
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr does not say why %s was not used:\n%s", gnu, r.stderr)
		}
	})
}

// TestCLI_RequireSigs: a path that no key signed is refused from a
// substituter, in Nix 2.8's words, unless require-sigs is false.
func TestCLI_RequireSigs(t *testing.T) {
	sig := regexp.MustCompile(`(?m)^Sig: .*\n`)
	unsigned := fixtureCacheCopy(t, "StoreDir: /nix/store\n", func(ni string) string { return sig.ReplaceAllString(ni, "") })
	opts := append(trustFixtureKey(t), "--option", "substituters", unsigned)

	t.Run("Refused", func(t *testing.T) {
		in := newInstance(t)
		r := in.run("", append(opts, "realise", leafPath)...)
		want := "the substitute for '" + leafPath + "' from '" + unsigned + "' is not signed by any of the keys in 'trusted-public-keys'"
		if r.code == 0 || !strings.Contains(r.stderr, want) {
			t.Errorf("exit %d, want a failure saying %q; stderr:\n%s", r.code, want, r.stderr)
		}
		if r := in.run("", "path-info", leafPath); r.code == 0 {
			t.Errorf("%s is valid after an unsigned substitute", leafPath)
		}
		r = in.run("", append(opts, "copy", "--from", unsigned, leafPath)...)
		if r.code == 0 || !strings.Contains(r.stderr, want) {
			t.Errorf("copy --from: exit %d, want a failure saying %q; stderr:\n%s", r.code, want, r.stderr)
		}
	})
	t.Run("NotRequired", func(t *testing.T) {
		in := newInstance(t)
		r := in.run("", append(opts, "--option", "require-sigs", "false", "realise", leafPath)...)
		if r.code != 0 || r.stdout != leafPath+"\n" {
			t.Fatalf("exit %d, stdout %q, stderr:\n%s", r.code, r.stdout, r.stderr)
		}
		if out := in.ok("path-info", "--json", leafPath); strings.Contains(out, "peer-test-cache-1:") {
			t.Errorf("path-info of an unsigned substitute shows a signature: %s", out)
		}
		c := newInstance(t)
		if r := c.run("", append(opts, "--option", "require-sigs", "false", "copy", "--from", unsigned, leafPath)...); r.code != 0 {
			t.Fatalf("copy --from with require-sigs false: exit %d\n%s", r.code, r.stderr)
		}
		c.ok("path-info", leafPath)
	})
}
