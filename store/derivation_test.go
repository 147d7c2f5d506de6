package store_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/storetest"
)

// fixtureDrvs reads every .drv of the Nix fixtures: path → text.
func fixtureDrvs(t *testing.T) map[store.Path][]byte {
	t.Helper()
	dir := filepath.Join(storetest.FixturesDir(t), "drvs", "store")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[store.Path][]byte{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[store.Path("/nix/store/"+e.Name())] = b
	}
	if len(out) < 200 {
		t.Fatalf("found %d fixture derivations, want at least 200", len(out))
	}
	return out
}

func parseFixture(t *testing.T, p store.Path, text []byte) *store.Derivation {
	t.Helper()
	name, err := store.NameFromDrvPath(p)
	if err != nil {
		t.Fatal(err)
	}
	d, err := store.ParseDerivation(store.DefaultDir, text, name)
	if err != nil {
		t.Fatalf("ParseDerivation(%s) = %v", p, err)
	}
	return d
}

// TestDerivation_Fixtures checks every .drv Nix 2.8 wrote: it parses, prints
// back byte for byte, hashes to its own store path as a text path with its
// references, and its output paths are the ones Nix computed.
func TestDerivation_Fixtures(t *testing.T) {
	drvs := fixtureDrvs(t)
	parsed := map[store.Path]*store.Derivation{}
	for p, text := range drvs {
		parsed[p] = parseFixture(t, p, text)
	}
	memo := map[store.Path]map[string]store.Hash{}
	var hasher store.InputHasher
	hasher = func(p store.Path) (map[string]store.Hash, error) {
		if h, ok := memo[p]; ok {
			return h, nil
		}
		h, err := parsed[p].HashModulo(store.DefaultDir, false, hasher)
		memo[p] = h
		return h, err
	}
	for p, d := range parsed {
		if got := d.ATerm(); got != string(drvs[p]) {
			t.Errorf("%s: ATerm() differs from the file:\n got %s\nwant %s", p, got, drvs[p])
		}
		textPath, err := store.DefaultDir.MakeTextPath(p.Name(), store.HashBytes(store.SHA256, drvs[p]), d.References())
		if err != nil || textPath != p {
			t.Errorf("text path of %s = %s, %v", p, textPath, err)
		}
		if err := d.CheckOutputs(store.DefaultDir, hasher); err != nil {
			t.Errorf("CheckOutputs(%s) = %v", p, err)
		}
	}
}

// TestDerivation_JSON compares the JSON form with what `nix derivation
// show` printed for each case.
func TestDerivation_JSON(t *testing.T) {
	dir := storetest.FixturesDir(t)
	cases, err := filepath.Glob(filepath.Join(dir, "expected", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range cases {
		var exp struct {
			DrvPath    string          `json:"drvPath"`
			DrvText    string          `json:"drvText"`
			Derivation json.RawMessage `json:"derivation"`
		}
		b, _ := os.ReadFile(c)
		if err := json.Unmarshal(b, &exp); err != nil || exp.DrvPath == "" {
			continue
		}
		n++
		t.Run(strings.TrimSuffix(filepath.Base(c), ".json"), func(t *testing.T) {
			p := store.Path(exp.DrvPath)
			d := parseFixture(t, p, []byte(exp.DrvText))
			got, err := d.JSON()
			if err != nil {
				t.Fatal(err)
			}
			var gotV, wantV any
			json.Unmarshal(got, &gotV)
			json.Unmarshal(exp.Derivation, &wantV)
			if !reflect.DeepEqual(gotV, wantV) {
				t.Errorf("JSON() =\n%s\nwant\n%s", got, exp.Derivation)
			}
			// And back: the JSON parses to the same derivation.
			back, err := store.ParseDerivationJSON(store.DefaultDir, exp.Derivation)
			if err != nil {
				t.Fatalf("ParseDerivationJSON = %v", err)
			}
			if back.ATerm() != exp.DrvText {
				t.Errorf("ATerm of parsed JSON =\n%s\nwant\n%s", back.ATerm(), exp.DrvText)
			}
		})
	}
	if n < 20 {
		t.Fatalf("found %d cases, want at least 20", n)
	}
}

func TestParseDerivation_Malformed(t *testing.T) {
	good := `Derive([("out","/nix/store/8z3rv77c71xvmyyijyry9760g7fbghah-trivial","","")],[],["/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox"],"x86_64-linux","/bin/sh",["-c","x"],[("name","trivial"),("out","/nix/store/8z3rv77c71xvmyyijyry9760g7fbghah-trivial")])`
	if _, err := store.ParseDerivation(store.DefaultDir, []byte(good), "trivial"); err != nil {
		t.Fatalf("ParseDerivation(good) = %v", err)
	}
	cases := []struct {
		name, text, want string
	}{
		{"empty", "", "expected 'Derive('"},
		{"truncated", good[:len(good)/2], "line 1"},
		{"missing close", good[:len(good)-1], "expected ')'"},
		{"trailing", good + "x", "unexpected data after"},
		{"bad escape", strings.Replace(good, `"-c"`, `"\q"`, 1), `invalid escape '\q'`},
		{"unterminated string", `Derive([("out`, "unterminated string"},
		{"wrong arity", strings.Replace(good, `"x86_64-linux",`, ``, 1), "expected"},
		{"not a store path", strings.Replace(good, `"/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox"`, `"/etc/passwd"`, 1), "expected a store path"},
		{"unknown hash algorithm", strings.Replace(good, `-trivial","",""`, `-trivial","md6","abc"`, 1), "unknown hash algorithm 'md6'"},
		{"hash without algo", strings.Replace(good, `-trivial","",""`, `-trivial","","abc"`, 1), "not both"},
		{"no outputs", strings.Replace(good, `[("out","/nix/store/8z3rv77c71xvmyyijyry9760g7fbghah-trivial","","")]`, `[]`, 1), "no outputs"},
		{"duplicate env", strings.Replace(good, `("name","trivial")`, `("name","trivial"),("name","x")`, 1), "duplicate environment variable"},
		{"line number", strings.Replace(good, `"x86_64-linux",`, "\"x86\n64\";", 1), "line 2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := store.ParseDerivation(store.DefaultDir, []byte(tc.text), "trivial")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseDerivation = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestParseDerivationJSON_Malformed(t *testing.T) {
	base := `{"name":"x","outputs":{"out":{}},"inputSrcs":[],"inputDrvs":{},"system":"x86_64-linux","builder":"/bin/sh","args":[],"env":{}}`
	if _, err := store.ParseDerivationJSON(store.DefaultDir, []byte(base)); err != nil {
		t.Fatalf("ParseDerivationJSON(base) = %v", err)
	}
	for _, tc := range []struct{ name, text, want string }{
		{"not json", `{`, "parsing derivation JSON"},
		{"trailing", base + "{}", "unexpected data"},
		{"no name", strings.Replace(base, `"name":"x",`, ``, 1), "neither 'name' nor 'env.name'"},
		{"bad name", strings.Replace(base, `"name":"x"`, `"name":"a b"`, 1), "illegal character"},
		{"no outputs", strings.Replace(base, `{"out":{}}`, `{}`, 1), "no outputs"},
		{"no builder", strings.Replace(base, `"builder":"/bin/sh",`, ``, 1), "lacks"},
		{"bad src", strings.Replace(base, `"inputSrcs":[]`, `"inputSrcs":["/tmp/x"]`, 1), "input source"},
		{"bad input drv", strings.Replace(base, `"inputDrvs":{}`, `"inputDrvs":{"/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox":["out"]}`, 1), "not a .drv"},
		{"unknown algo", strings.Replace(base, `{"out":{}}`, `{"out":{"hashAlgo":"md6","hash":"00"}}`, 1), "unknown hash algorithm"},
		{"bad hash", strings.Replace(base, `{"out":{}}`, `{"out":{"hashAlgo":"sha256","hash":"00"}}`, 1), "wrong length"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := store.ParseDerivationJSON(store.DefaultDir, []byte(tc.text))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseDerivationJSON = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func FuzzParseDerivation(f *testing.F) {
	dir := filepath.Join("..", "..", "shared", "fixtures", "nix-2.8", "drvs")
	seeds, _ := filepath.Glob(filepath.Join(dir, "*.drv"))
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`Derive([("out","/nix/store/8z3rv77c71xvmyyijyry9760g7fbghah-t","","")],[],[],"s","b",[],[])`))
	f.Fuzz(func(t *testing.T, text []byte) {
		d, err := store.ParseDerivation(store.DefaultDir, text, "x")
		if err != nil {
			return
		}
		// Printing and parsing again is stable.
		out := d.ATerm()
		d2, err := store.ParseDerivation(store.DefaultDir, []byte(out), "x")
		if err != nil {
			t.Fatalf("reparse of printed derivation failed: %v\n%s", err, out)
		}
		if out2 := d2.ATerm(); out2 != out {
			t.Fatalf("print is not stable:\n%s\n%s", out, out2)
		}
	})
}
