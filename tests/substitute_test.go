package tests

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fixtureCacheOptions are the global flags that make the fixture cache
// Nix wrote a trusted substituter.
func fixtureCacheOptions(t *testing.T, name string) []string {
	t.Helper()
	key, err := os.ReadFile(filepath.Join(fixturesDir(t), "cache-public.key"))
	if err != nil {
		t.Fatal(err)
	}
	return []string{
		"--option", "substituters", "file://" + filepath.Join(fixturesDir(t), name),
		"--option", "trusted-public-keys", strings.TrimSpace(string(key)),
	}
}

// TestCLI_Substitute: realise substitutes an output path and its
// references from Nix's cache, saying what it fetches.
func TestCLI_Substitute(t *testing.T) {
	in := newInstance(t)
	args := append(fixtureCacheOptions(t, "cache-xz"), "realise", "/nix/store/4vxrd7yyg1421x1ay2vkf2l2ds113aa2-refs-withref")
	r := in.run("", args...)
	if r.code != 0 || r.stdout != "/nix/store/4vxrd7yyg1421x1ay2vkf2l2ds113aa2-refs-withref\n" {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		"these 2 paths will be fetched:\n",
		"copying path '/nix/store/ib5ymw26pl1q7iw9qn4f4z7d730pkw69-leaf' from 'file://",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if out := in.ok("path-info", "--json", "/nix/store/ib5ymw26pl1q7iw9qn4f4z7d730pkw69-leaf"); !strings.Contains(out, `"signatures":["peer-test-cache-1:`) {
		t.Errorf("path-info of a substituted path = %s", out)
	}
}

// TestCLI_ServeAndSubstitute: `storefs serve` in one state directory, a
// signed substitution into another over HTTP on loopback, and copy --from
// of a .drv that then builds.
func TestCLI_ServeAndSubstitute(t *testing.T) {
	a := newInstance(t)
	a.ok("add", busyboxDir(t))
	a.ok("derivation", "add", filepath.Join(fixturesDir(t), "drvs", "trivial.drv"))
	a.ok("realise", "/nix/store/ylidkad964ccmaay0qrd9zdywj84gw6f-trivial.drv")
	keyDir := t.TempDir()
	sec, pub := filepath.Join(keyDir, "k.sec"), filepath.Join(keyDir, "k.pub")
	a.ok("key", "generate", "test-key-1", sec, pub)
	serve := exec.Command(storefsBin, "--state-dir", a.state, "serve", "--listen", "127.0.0.1:0", "--secret-key", sec)
	stdout, _ := serve.StdoutPipe()
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		serve.Process.Signal(syscall.SIGTERM)
		serve.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the served URL: %v", err)
	}
	url := strings.TrimSpace(line)
	pubKey, _ := os.ReadFile(pub)

	b := newInstance(t)
	opts := []string{"--option", "substituters", url, "--option", "trusted-public-keys", strings.TrimSpace(string(pubKey))}
	r := b.run("", append(opts, "realise", "/nix/store/8z3rv77c71xvmyyijyry9760g7fbghah-trivial")...)
	if r.code != 0 || r.stdout != "/nix/store/8z3rv77c71xvmyyijyry9760g7fbghah-trivial\n" {
		t.Fatalf("substitute over HTTP: exit %d %q\n%s", r.code, r.stdout, r.stderr)
	}
	// copy --from of a .drv brings the .drv and its closure (busybox),
	// not its outputs; realising it then substitutes the output.
	c := newInstance(t)
	r = c.run("", append(opts, "copy", "--from", url, "/nix/store/ylidkad964ccmaay0qrd9zdywj84gw6f-trivial.drv")...)
	if r.code != 0 {
		t.Fatalf("copy --from: %s", r.stderr)
	}
	c.ok("path-info", busyboxPath)
	if r := c.run("", "path-info", "/nix/store/8z3rv77c71xvmyyijyry9760g7fbghah-trivial"); r.code == 0 {
		t.Errorf("copy --from of a .drv brought its output too")
	}
	if got := strings.TrimSpace(c.ok("realise", "/nix/store/ylidkad964ccmaay0qrd9zdywj84gw6f-trivial.drv")); got != "/nix/store/8z3rv77c71xvmyyijyry9760g7fbghah-trivial" {
		t.Errorf("realise after copy --from = %q", got)
	}
}

// TestMount_SubstituteOnExec: executing a binary from a path that is not
// in the store yet substitutes it on lookup.
func TestMount_SubstituteOnExec(t *testing.T) {
	in := newInstance(t)
	m := in.mount(fixtureCacheOptions(t, "cache-zstd")...)
	start := time.Now()
	out, err := sh(t, m.path(busyboxPath)+"/bin/busybox echo substituted-and-run")
	if err != nil || out != "substituted-and-run\n" {
		t.Fatalf("exec = %q, %v\n%s", out, err, m.stderr.String())
	}
	t.Logf("substitute on exec took %v", time.Since(start))
	if got := in.ok("path-info", busyboxPath); strings.TrimSpace(got) != busyboxPath {
		t.Errorf("path-info = %q", got)
	}
	// A name no cache has: ENOENT, quickly, and again from memory.
	if out, err := sh(t, "stat "+m.dir+"/00000000000000000000000000000000-nothing"); err == nil {
		t.Errorf("stat of an unknown path = %s", out)
	}
}
