package tests

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestCLI_AddBusybox: `storefs add` of a directory holding Debian's busybox
// prints the path Nix prints, and path-info --json has Nix's fields.
func TestCLI_AddBusybox(t *testing.T) {
	in := newInstance(t)
	dir := busyboxDir(t)
	if got := strings.TrimSpace(in.ok("add", dir)); got != busyboxPath {
		t.Fatalf("add = %q, want %q", got, busyboxPath)
	}
	var got []map[string]any
	if err := json.Unmarshal([]byte(in.ok("path-info", "--json", busyboxPath)), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("path-info --json = %v", got)
	}
	delete(got[0], "registrationTime")
	want := map[string]any{
		"path":       busyboxPath,
		"narHash":    "sha256-SUza0DfPfQp17oFvwGC5JmPeEwlgKv9DwvnOVdreTEA=",
		"narSize":    float64(1982736),
		"references": []any{},
		"ca":         "fixed:r:sha256:0h2cvvd5bkprq91zyak0149xwqr6p5hc0vw1xrshlzfg6z8dlk29",
	}
	if !reflect.DeepEqual(got[0], want) {
		t.Errorf("path-info --json = %v, want %v", got[0], want)
	}
	if nixPathInfo := nixAddPathInfo(t, dir); nixPathInfo != nil {
		delete(nixPathInfo, "registrationTime")
		if !reflect.DeepEqual(got[0], nixPathInfo) {
			t.Errorf("path-info --json = %v, Nix says %v", got[0], nixPathInfo)
		}
	}
}

// nixAddPathInfo adds dir with real Nix into a chroot store in a temporary
// directory (never the machine's /nix/store) and returns its path info,
// or nil (after saying why) when Nix is not installed.
func nixAddPathInfo(t *testing.T, dir string) map[string]any {
	t.Helper()
	if _, err := exec.LookPath("nix-store"); err != nil {
		t.Log("nix-store is not installed: comparing with the fixture's values only")
		return nil
	}
	env := nixEnv(t)
	root := filepath.Join(t.TempDir(), "nixroot")
	add := exec.Command("nix-store", "--store", root, "--add", dir)
	add.Env = env
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("nix-store --add: %v\n%s", err, out)
	}
	info := exec.Command("nix", "path-info", "--store", root, "--json", busyboxPath)
	info.Env = env
	out, err := info.Output()
	if err != nil {
		t.Fatalf("nix path-info: %v", err)
	}
	var got []map[string]any
	if err := json.Unmarshal(out, &got); err != nil || len(got) != 1 {
		t.Fatalf("nix path-info --json = %s, %v", out, err)
	}
	return got[0]
}

// nixEnv is an environment in which Nix keeps all its state and
// configuration in temporary directories.
func nixEnv(t *testing.T) []string {
	t.Helper()
	base := t.TempDir()
	conf := filepath.Join(base, "conf")
	os.MkdirAll(conf, 0o755)
	os.WriteFile(filepath.Join(conf, "nix.conf"), []byte("experimental-features = nix-command\nbuild-users-group =\nsandbox = false\nsubstituters =\n"), 0o644)
	return append(os.Environ(),
		"NIX_CONF_DIR="+conf,
		"NIX_STATE_DIR="+filepath.Join(base, "state"),
		"NIX_LOG_DIR="+filepath.Join(base, "log"),
		"HOME="+filepath.Join(base, "home"),
		"XDG_CACHE_HOME="+filepath.Join(base, "cache"),
	)
}

// TestCLI_Errors: bad input gets "error: …" on stderr, a non-zero exit and
// nothing on stdout.
func TestCLI_Errors(t *testing.T) {
	in := newInstance(t)
	cases := []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"missing file", "", []string{"add", "/does/not/exist"}, "error: adding /does/not/exist"},
		{"not a store path", "", []string{"path-info", "/etc/passwd"}, "error: path '/etc/passwd' is not in the Nix store"},
		{"invalid path", "", []string{"path-info", busyboxPath}, "is not valid"},
		{"bad json", "{", []string{"derivation", "add"}, "error: parsing derivation JSON"},
		{"bad option", "", []string{"--option", "max-jobs"}, "needs two arguments"},
		{"bad hash type", "", []string{"hash", "path", "--type", "md6", "/bin"}, "unknown hash algorithm 'md6'"},
		{"bad drv", "Derive([(", []string{"derivation", "add"}, "parsing derivation at line 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := in.run(tc.stdin, tc.args...)
			if r.code == 0 || !strings.Contains(r.stderr, tc.want) || r.stdout != "" {
				t.Errorf("storefs %v: exit %d, stdout %q, stderr %q; want an error containing %q", tc.args, r.code, r.stdout, r.stderr, tc.want)
			}
		})
	}
	// Nothing became valid on the way.
	if out := in.ok("path-info", "--all"); out != "" {
		t.Errorf("path-info --all = %q after failed commands, want nothing", out)
	}
}

// TestCLI_UnknownSettingWarns: a setting storefs does not know is accepted
// with a warning, as Nix does.
func TestCLI_UnknownSettingWarns(t *testing.T) {
	in := newInstance(t)
	r := in.run("", "--option", "no-such-setting", "1", "--option", "max-jobs", "3", "config", "show")
	if r.code != 0 || !strings.Contains(r.stderr, "warning: unknown setting 'no-such-setting'") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "max-jobs = 3\n") || !strings.Contains(r.stdout, "log-lines = 10\n") || !strings.Contains(r.stdout, "substituters = \n") {
		t.Errorf("config show =\n%s", r.stdout)
	}
}

// TestCLI_DerivationRoundTrip: the JSON form of a fixture derivation with
// blank outputs is added under the .drv path Nix gave it; show prints it
// back.
func TestCLI_DerivationRoundTrip(t *testing.T) {
	in := newInstance(t)
	in.ok("add", busyboxDir(t))
	b, err := os.ReadFile(filepath.Join(fixturesDir(t), "expected", "trivial.json"))
	if err != nil {
		t.Fatal(err)
	}
	var exp struct {
		DrvPath    string         `json:"drvPath"`
		Derivation map[string]any `json:"derivation"`
	}
	json.Unmarshal(b, &exp)
	blank, _ := json.Marshal(exp.Derivation)
	s := strings.ReplaceAll(string(blank), "/nix/store/8z3rv77c71xvmyyijyry9760g7fbghah-trivial", "")
	r := in.run(s, "derivation", "add")
	if r.code != 0 || strings.TrimSpace(r.stdout) != exp.DrvPath {
		t.Fatalf("derivation add = %q (exit %d, %s), want %s", r.stdout, r.code, r.stderr, exp.DrvPath)
	}
	var shown map[string]map[string]any
	if err := json.Unmarshal([]byte(in.ok("derivation", "show", exp.DrvPath)), &shown); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(shown[exp.DrvPath], exp.Derivation) {
		t.Errorf("derivation show = %v, want %v", shown[exp.DrvPath], exp.Derivation)
	}
	if got := strings.TrimSpace(in.ok("query", "--outputs", exp.DrvPath)); got != "/nix/store/8z3rv77c71xvmyyijyry9760g7fbghah-trivial" {
		t.Errorf("query --outputs = %q", got)
	}
}
