package store_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/storetest"
)

// derivationJSONSeeds are the derivations of the Nix fixtures as `nix
// derivation show` printed them, and the repository's examples.
func derivationJSONSeeds(f *testing.F) [][]byte {
	f.Helper()
	var seeds [][]byte
	cases, _ := filepath.Glob(filepath.Join(storetest.FixturesDir(f), "expected", "*.json"))
	for _, c := range cases {
		b, err := os.ReadFile(c)
		if err != nil {
			f.Fatal(err)
		}
		var exp struct {
			Derivation json.RawMessage `json:"derivation"`
		}
		if json.Unmarshal(b, &exp) == nil && len(exp.Derivation) > 0 {
			seeds = append(seeds, exp.Derivation)
		}
	}
	examples, _ := filepath.Glob(filepath.Join(storetest.RepoRoot(f), "examples", "*.json"))
	for _, e := range examples {
		if b, err := os.ReadFile(e); err == nil {
			seeds = append(seeds, b)
		}
	}
	if len(seeds) < 20 {
		f.Fatalf("found %d JSON seeds, want the fixtures' derivations", len(seeds))
	}
	return append(seeds,
		[]byte(`{"name":"x","outputs":{"out":{}},"inputSrcs":[],"inputDrvs":{},"system":"s","builder":"b","args":[],"env":{}}`),
		[]byte(`{"/nix/store/ylidkad964ccmaay0qrd9zdywj84gw6f-trivial.drv":{"name":"t","outputs":{"out":{"hashAlgo":"sha256","method":"nar","hash":"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="}},"inputDrvs":{"/nix/store/ylidkad964ccmaay0qrd9zdywj84gw6f-trivial.drv":{"outputs":["out"],"dynamicOutputs":{}}},"system":"s","builder":"b"}}`),
	)
}

// withName returns the JSON object j with a top-level "name".
func withName(t *testing.T, j []byte, name string) []byte {
	t.Helper()
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(j, &obj); err != nil {
		t.Fatalf("JSON() is not an object: %v\n%s", err, j)
	}
	obj["name"], _ = json.Marshal(name)
	out, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkDerivationInvariants fails unless d is what the parsers promise:
// a valid name, output names usable as file name suffixes, store paths in
// the store directory, fixed-output hashes that parse.
func checkDerivationInvariants(t *testing.T, d *store.Derivation) {
	t.Helper()
	if err := store.CheckName(d.Name); err != nil {
		t.Errorf("parsed derivation has name %q: %v", d.Name, err)
	}
	if len(d.Outputs) == 0 {
		t.Errorf("parsed derivation has no outputs")
	}
	for name, o := range d.Outputs {
		if name == "" || strings.ContainsAny(name, "/\x00") {
			t.Errorf("parsed derivation has output name %q", name)
		}
		if o.Path != "" {
			if _, err := store.DefaultDir.Parse(string(o.Path)); err != nil {
				t.Errorf("output %q has path %q: %v", name, o.Path, err)
			}
		}
		if o.IsFixed() {
			if _, _, err := o.FixedHash(); err != nil {
				t.Errorf("output %q has hash %q %q: %v", name, o.HashAlgo, o.Hash, err)
			}
		}
	}
	for _, p := range d.References() {
		if _, err := store.DefaultDir.Parse(string(p)); err != nil {
			t.Errorf("reference %q: %v", p, err)
		}
	}
	for p := range d.InputDrvs {
		if !p.IsDerivation() {
			t.Errorf("input derivation %q is not a .drv", p)
		}
	}
}

// FuzzParseDerivationJSON checks the JSON reader of `derivation add` on
// any input: what it accepts satisfies the invariants, prints as JSON that
// reads back to the same derivation (JSON → derivation → JSON is stable),
// and, once every output has a path, prints as an ATerm that the .drv
// parser reads back to the same text.
func FuzzParseDerivationJSON(f *testing.F) {
	for _, s := range derivationJSONSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := store.ParseDerivationJSON(store.DefaultDir, data)
		if err != nil {
			return
		}
		checkDerivationInvariants(t, d)
		j, err := d.JSON()
		if err != nil {
			t.Fatalf("JSON() = %v", err)
		}
		d2, err := store.ParseDerivationJSON(store.DefaultDir, withName(t, j, d.Name))
		if err != nil {
			t.Fatalf("reading back JSON() = %v\n%s", err, j)
		}
		if d2.Name != d.Name || d2.ATerm() != d.ATerm() {
			t.Fatalf("JSON round trip changed the derivation:\n%s %s\n%s %s", d.Name, d.ATerm(), d2.Name, d2.ATerm())
		}
		if j2, _ := d2.JSON(); string(j2) != string(j) {
			t.Fatalf("JSON() is not stable:\n%s\n%s", j, j2)
		}
		for _, o := range d.Outputs {
			if o.Path == "" {
				return // a derivation to fill in: no ATerm yet
			}
		}
		text := d.ATerm()
		d3, err := store.ParseDerivation(store.DefaultDir, []byte(text), d.Name)
		if err != nil {
			t.Fatalf("ParseDerivation(ATerm()) = %v\n%s", err, text)
		}
		if got := d3.ATerm(); got != text {
			t.Fatalf("ATerm round trip changed the derivation:\n%s\n%s", text, got)
		}
	})
}

// FuzzDerivationATermToJSON checks that the JSON form of a parsed .drv
// (what `derivation show` prints) says the same as the .drv: reading it
// back gives the same ATerm text. Texts the JSON form cannot represent
// are skipped: output names JSON rejects, strings that are not UTF-8
// (JSON would replace bytes) and fixed-output hashes not in base16 (the
// JSON reader normalises them, as Nix does when it writes a .drv).
func FuzzDerivationATermToJSON(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join(storetest.FixturesDir(f), "drvs", "*.drv"))
	for _, s := range seeds {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`Derive([("out","/nix/store/8z3rv77c71xvmyyijyry9760g7fbghah-t","r:sha256","e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")],[],[],"s","b",[],[("out","x")])`))
	f.Fuzz(func(t *testing.T, text []byte) {
		d, err := store.ParseDerivation(store.DefaultDir, text, "x")
		if err != nil {
			return
		}
		if !utf8.Valid(text) {
			return
		}
		for name, o := range d.Outputs {
			if name == "" || strings.ContainsAny(name, "/\x00") {
				return
			}
			if o.IsFixed() {
				_, h, err := o.FixedHash()
				if err != nil {
					t.Fatalf("ParseDerivation accepted output %q with hash %q: %v", name, o.Hash, err)
				}
				if h.Base16() != o.Hash {
					return
				}
			}
		}
		j, err := d.JSON()
		if err != nil {
			t.Fatalf("JSON() = %v", err)
		}
		back, err := store.ParseDerivationJSON(store.DefaultDir, withName(t, j, d.Name))
		if err != nil {
			t.Fatalf("ParseDerivationJSON(JSON()) = %v\n%s", err, j)
		}
		if got, want := back.ATerm(), d.ATerm(); got != want {
			t.Fatalf("the JSON form says another derivation:\n .drv %s\n JSON %s", want, got)
		}
	})
}
