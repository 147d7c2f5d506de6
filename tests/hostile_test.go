package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/cache"
	"github.com/storefs/storefs/store/nar/nartest"
)

// checkNoEscape fails if a malicious archive created what it aims at:
// nartest.EscapeName in dir (beside the target) or nartest.EscapeAbs.
func checkNoEscape(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Lstat(filepath.Join(dir, nartest.EscapeName)); err == nil {
		t.Errorf("%s was created beside the target", filepath.Join(dir, nartest.EscapeName))
	}
	if _, err := os.Lstat(nartest.EscapeAbs); err == nil {
		os.RemoveAll(nartest.EscapeAbs)
		t.Errorf("%s was created", nartest.EscapeAbs)
	}
}

// TestCLI_NarRestore_Malicious: `storefs nar restore` rejects every
// malicious archive of nartest with an error naming the offset and what is
// wrong, and leaves neither the target nor anything beside it; every
// valid archive restores to a tree that dumps to the same bytes.
func TestCLI_NarRestore_Malicious(t *testing.T) {
	in := newInstance(t)
	for _, tc := range nartest.Malicious() {
		t.Run(tc.Name, func(t *testing.T) {
			dir := t.TempDir()
			target := filepath.Join(dir, "out")
			r := in.run(string(tc.Data), "nar", "restore", target)
			if r.code != 1 {
				t.Fatalf("nar restore of %s: exit %d, want 1; stderr %q", tc.Why, r.code, r.stderr)
			}
			if !strings.HasPrefix(r.stderr, "error: restoring nar to "+target+": invalid nar at byte ") || strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("stderr = %q, want one line \"error: restoring nar to %s: invalid nar at byte …\"", r.stderr, target)
			}
			if _, err := os.Lstat(target); err == nil {
				t.Errorf("the target %s exists after a refused restore", target)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("%s holds %v after a refused restore", dir, entries)
			}
			checkNoEscape(t, dir)
		})
	}
	for _, tc := range nartest.Valid() {
		t.Run("Valid/"+tc.Name, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "out")
			if r := in.run(string(tc.Data), "nar", "restore", target); r.code != 0 {
				t.Fatalf("nar restore of %s: exit %d: %s", tc.Why, r.code, r.stderr)
			}
			if got := in.ok("nar", "dump", target); got != string(tc.Data) {
				t.Errorf("nar dump of the restored %s differs from the archive", tc.Name)
			}
		})
	}
}

// hostileCache is a signed file cache holding one path per case, each
// with the case's bytes as its NAR (and a narinfo declaring their hash and
// size), and the options that make storefs trust it.
type hostileCache struct {
	dir   string
	opts  []string
	paths map[string]store.Path // by case name
}

// hostilePathOf is the store path a case's NAR is offered as.
func hostilePathOf(name string) store.Path {
	p, err := store.DefaultDir.MakePath("output:out", store.HashString(store.SHA256, name), "hostile-"+name)
	if err != nil {
		panic("tests: invariant broken: case name " + name + " is not a store path name")
	}
	return p
}

func newHostileCache(t *testing.T, cases []nartest.Case) *hostileCache {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	c, err := cache.NewFileCache(dir, &cache.Options{Compression: "zstd"})
	if err != nil {
		t.Fatal(err)
	}
	sk, err := cache.GenerateKey("hostile-cache-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	hc := &hostileCache{dir: dir, paths: map[string]store.Path{}}
	for _, tc := range cases {
		if len(tc.Data) == 0 {
			continue // NarSize 0 is refused when the narinfo is parsed
		}
		p := hostilePathOf(tc.Name)
		ni := &cache.NARInfo{StorePath: p, NARHash: store.HashBytes(store.SHA256, tc.Data), NARSize: uint64(len(tc.Data))}
		if err := c.PutNAR(ctx, ni, bytes.NewReader(tc.Data)); err != nil {
			t.Fatal(err)
		}
		ni.Sign(sk)
		if err := c.PutNARInfo(ctx, ni); err != nil {
			t.Fatal(err)
		}
		hc.paths[tc.Name] = p
	}
	hc.opts = []string{
		"--option", "substituters", "file://" + dir,
		"--option", "trusted-public-keys", sk.PublicKey().String(),
	}
	return hc
}

// checkNotImported fails unless p is invalid and absent from the backing
// store, and the temporary area is empty.
func (in *instance) checkNotImported(t *testing.T, p store.Path) {
	t.Helper()
	if _, err := os.Lstat(filepath.Join(in.state, "store", p.Base())); err == nil {
		t.Errorf("%s has contents in the backing store", p)
	}
	if entries, _ := os.ReadDir(filepath.Join(in.state, "store", ".tmp")); len(entries) != 0 {
		t.Errorf("the temporary area holds %v", entries)
	}
	checkNoEscape(t, filepath.Join(in.state, "store", ".tmp"))
}

// TestCLI_Substitute_MaliciousNAR: every malicious archive of nartest,
// offered by a trusted cache as the NAR of a path, is refused by
// substitution (`realise`) and by import (`copy --from`) with an error
// naming the path and the archive's flaw; nothing is registered, the
// temporary area is left empty and nothing is written beside it.
func TestCLI_Substitute_MaliciousNAR(t *testing.T) {
	hc := newHostileCache(t, nartest.Malicious())
	in := newInstance(t)
	for _, tc := range nartest.Malicious() {
		p, ok := hc.paths[tc.Name]
		if !ok {
			continue
		}
		t.Run(tc.Name, func(t *testing.T) {
			for _, args := range [][]string{
				{"realise", string(p)},
				{"copy", "--from", "file://" + hc.dir, string(p)},
			} {
				r := in.run("", append(append([]string(nil), hc.opts...), args...)...)
				if r.code == 0 {
					t.Fatalf("storefs %s of %s: exit 0, want a refusal", args[0], tc.Why)
				}
				if !strings.Contains(r.stderr, "error: ") || !strings.Contains(r.stderr, string(p)) || !strings.Contains(r.stderr, "invalid nar at byte ") {
					t.Errorf("storefs %s: stderr %q, want an error naming %s and the archive's flaw", args[0], r.stderr, p)
				}
				in.checkNotImported(t, p)
			}
		})
	}
	if valid := strings.TrimSpace(in.ok("path-info", "--all")); valid != "" {
		t.Errorf("valid paths after the refusals:\n%s", valid)
	}
}

// TestCLI_Substitute_ValidNARs: the same route accepts the valid archives
// of nartest, so the refusals above are not a route that refuses
// everything.
func TestCLI_Substitute_ValidNARs(t *testing.T) {
	hc := newHostileCache(t, nartest.Valid())
	in := newInstance(t)
	for _, tc := range nartest.Valid() {
		p := hc.paths[tc.Name]
		r := in.run("", append(append([]string(nil), hc.opts...), "realise", string(p))...)
		if tc.Name == "long-path" {
			// 4095 bytes below the root, plus the temporary area's own
			// path, exceed PATH_MAX when the tree is canonicalised.
			if r.code == 0 {
				t.Errorf("realise of %s succeeded; expected ENAMETOOLONG below the temporary area", tc.Name)
			} else if !strings.Contains(r.stderr, "file name too long") {
				t.Errorf("realise of %s: %s", tc.Name, r.stderr)
			}
			in.checkNotImported(t, p)
			continue
		}
		if r.code != 0 || strings.TrimSpace(r.stdout) != string(p) {
			t.Errorf("realise of %s: exit %d, stdout %q, stderr:\n%s", tc.Why, r.code, r.stdout, r.stderr)
			continue
		}
		if got := in.ok("nar", "dump", string(p)); got != string(tc.Data) {
			t.Errorf("nar dump of the substituted %s differs from the archive", tc.Name)
		}
	}
}

// TestCLI_AddText_ForgedDerivation: a .drv whose outputs are another
// derivation's (valid with other contents, or not built yet) cannot be
// added as text, nor through `derivation add` with its output paths
// given; the genuine derivation still builds its own output afterwards.
func TestCLI_AddText_ForgedDerivation(t *testing.T) {
	in := newInstance(t)
	in.ok("add", busyboxDir(t))
	victimDrv, victimOut := in.addDrv("victim", "echo good > $out", nil)
	if got := strings.TrimSpace(in.ok("realise", victimDrv)); got != victimOut {
		t.Fatalf("realise victim = %q", got)
	}
	_, pendingOut := in.addDrv("pending", "echo pending > $out", nil)
	for _, target := range []string{victimOut, pendingOut} {
		name := strings.SplitN(filepath.Base(target), "-", 2)[1]
		forged := `Derive([("out","` + target + `","","")],[],["` + busyboxPath + `"],"x86_64-linux","` + busyboxPath + `/bin/busybox",["sh","-e","-c","echo evil > $out"],[("name","` + name + `"),("out","` + target + `")])`
		r := in.run(forged, "add", "--text", name+".drv", "--reference", busyboxPath)
		if r.code == 0 || !strings.Contains(r.stderr, "has incorrect output '"+target+"'") {
			t.Errorf("add --text of a .drv claiming %s: exit %d, stdout %q, stderr %q; want Nix's \"incorrect output\" refusal", target, r.code, r.stdout, r.stderr)
		}
		var j map[string]any
		json.Unmarshal([]byte(drvJSON(name, "echo evil > $out", nil)), &j)
		j["outputs"] = map[string]any{"out": map[string]any{"path": target}}
		data, _ := json.Marshal(j)
		r = in.run(string(data), "derivation", "add")
		if r.code == 0 || !strings.Contains(r.stderr, "incorrect output") {
			t.Errorf("derivation add claiming %s: exit %d, stdout %q, stderr %q; want a refusal", target, r.code, r.stdout, r.stderr)
		}
	}
	if got := strings.TrimSpace(in.ok("query", "--deriver", victimOut)); got != victimDrv {
		t.Errorf("deriver of %s = %q, want %s", victimOut, got, victimDrv)
	}
	if got := strings.TrimSpace(in.ok("realise", pendingOut)); got != pendingOut {
		t.Fatalf("realise %s = %q", pendingOut, got)
	}
	for out, want := range map[string]string{victimOut: "good\n", pendingOut: "pending\n"} {
		if data, err := os.ReadFile(filepath.Join(in.state, "store", filepath.Base(out))); err != nil || string(data) != want {
			t.Errorf("%s holds %q, %v; want %q", out, data, err, want)
		}
	}
}
