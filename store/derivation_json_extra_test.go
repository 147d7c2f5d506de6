package store_test

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/storetest"
)

// jsonCase is one expected/<case>.json of the Nix fixtures: the .drv
// path, its text and outputs, and the derivation as `nix derivation show`
// printed it, decoded so that tests can change it.
type jsonCase struct {
	DrvPath    store.Path
	DrvText    string
	Outputs    map[string]store.Path
	Derivation map[string]any
}

func loadJSONCase(t *testing.T, name string) jsonCase {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(storetest.FixturesDir(t), "expected", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var c jsonCase
	if err := json.Unmarshal(b, &struct {
		DrvPath    *store.Path            `json:"drvPath"`
		DrvText    *string                `json:"drvText"`
		Outputs    *map[string]store.Path `json:"outputs"`
		Derivation *map[string]any        `json:"derivation"`
	}{&c.DrvPath, &c.DrvText, &c.Outputs, &c.Derivation}); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if c.DrvPath == "" || c.Derivation == nil {
		t.Fatalf("%s: no drvPath or derivation", name)
	}
	return c
}

// edit returns a deep copy of the derivation JSON with f applied.
func (c jsonCase) edit(t *testing.T, f func(d map[string]any)) []byte {
	t.Helper()
	b, err := json.Marshal(c.Derivation)
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	f(d)
	if b, err = json.Marshal(d); err != nil {
		t.Fatal(err)
	}
	return b
}

// blankOutputs empties the output paths and their variables, as someone
// writing the JSON by hand leaves them.
func blankOutputs(d map[string]any) {
	env := d["env"].(map[string]any)
	for name, o := range d["outputs"].(map[string]any) {
		delete(o.(map[string]any), "path")
		env[name] = ""
	}
}

// addJSON parses js and adds the derivation to st.
func addJSON(t *testing.T, st *store.Store, js []byte) (store.Path, error) {
	t.Helper()
	d, err := store.ParseDerivationJSON(st.Dir, js)
	if err != nil {
		t.Fatalf("ParseDerivationJSON(%s) = %v", js, err)
	}
	return st.AddDerivation(context.Background(), d)
}

// nixFixedOutputPath is Nix's makeFixedOutputPath without references,
// written out from its definition rather than through store.Dir: a
// recursive SHA-256 makes a "source" path of the NAR hash; anything else an
// "output:out" path of the fingerprint "fixed:out:[r:]<algo>:<base16>:".
func nixFixedOutputPath(name string, recursive bool, algo string, digest []byte) store.Path {
	var inner string
	if recursive && algo == "sha256" {
		inner = "source:sha256:" + hex.EncodeToString(digest)
	} else {
		r := ""
		if recursive {
			r = "r:"
		}
		fp := sha256.Sum256([]byte("fixed:out:" + r + algo + ":" + hex.EncodeToString(digest) + ":"))
		inner = "output:out:sha256:" + hex.EncodeToString(fp[:])
	}
	h := sha256.Sum256([]byte(inner + ":/nix/store:" + name))
	return store.Path("/nix/store/" + store.Base32Encode(store.CompressHash(h[:], 20)) + "-" + name)
}

// encodings gives a digest in every form a derivation's JSON may hold it:
// base16, nix-base32, base64, SRI and "<algo>:<nix-base32>".
func encodings(algo string, digest []byte) map[string]string {
	return map[string]string{
		"base16":     hex.EncodeToString(digest),
		"nix-base32": store.Base32Encode(digest),
		"base64":     base64.StdEncoding.EncodeToString(digest),
		"sri":        algo + "-" + base64.StdEncoding.EncodeToString(digest),
		"prefixed":   algo + ":" + store.Base32Encode(digest),
	}
}

// TestParseDerivationJSON_Name: a top-level "name" is the derivation's
// name even when env.name says otherwise; without one, env.name is.
func TestParseDerivationJSON_Name(t *testing.T) {
	st := storetest.NewStore(t, nil)
	storetest.AddBusybox(t, st)
	c := loadJSONCase(t, "trivial")

	// Nix 2.8's JSON has no top-level name: env.name gives Nix's path.
	if p, err := addJSON(t, st, c.edit(t, blankOutputs)); err != nil || p != c.DrvPath {
		t.Errorf("AddDerivation(env.name) = %s, %v; want %s", p, err, c.DrvPath)
	}
	// The same name at the top changes nothing.
	if p, err := addJSON(t, st, c.edit(t, func(d map[string]any) { d["name"] = "trivial" })); err != nil || p != c.DrvPath {
		t.Errorf("AddDerivation(name = env.name) = %s, %v; want %s", p, err, c.DrvPath)
	}
	js := c.edit(t, func(d map[string]any) {
		blankOutputs(d)
		d["name"] = "renamed"
	})
	d, err := store.ParseDerivationJSON(st.Dir, js)
	if err != nil || d.Name != "renamed" {
		t.Fatalf("ParseDerivationJSON = %+v, %v; want the name renamed", d, err)
	}
	if d.Env["name"] != "trivial" {
		t.Errorf("env.name = %q, want it kept as trivial", d.Env["name"])
	}
	p, err := st.AddDerivation(context.Background(), d)
	if err != nil || !strings.HasSuffix(string(p), "-renamed.drv") {
		t.Fatalf("AddDerivation = %s, %v; want a path named renamed.drv", p, err)
	}
	outs, err := st.DerivationOutputs(p)
	if err != nil || !strings.HasSuffix(string(outs["out"]), "-renamed") {
		t.Errorf("DerivationOutputs = %v, %v; want out named renamed", outs, err)
	}
	// In `nix derivation show`'s {"<drv path>": {…}} form too.
	wrapped, _ := json.Marshal(map[string]json.RawMessage{string(p): js})
	if d, err := store.ParseDerivationJSON(st.Dir, wrapped); err != nil || d.Name != "renamed" {
		t.Errorf("ParseDerivationJSON(wrapped) = %+v, %v; want the name renamed", d, err)
	}
}

// TestParseDerivationJSON_UnknownKeys: keys storefs does not know, at the
// top, in an output and in an input derivation of newer Nix's form, are
// ignored: the derivation is Nix's, byte for byte.
func TestParseDerivationJSON_UnknownKeys(t *testing.T) {
	for _, name := range []string{"trivial", "multi-output", "allowed-refs-violation", "fod-recursive-sha256", "structured-attrs"} {
		t.Run(name, func(t *testing.T) {
			c := loadJSONCase(t, name)
			js := c.edit(t, func(d map[string]any) {
				d["meta"] = map[string]any{"description": "x", "list": []any{1, true, nil}}
				d["version"] = 3
				d["type"] = "derivation"
				for _, o := range d["outputs"].(map[string]any) {
					o.(map[string]any)["extra"] = []any{"ignored"}
				}
				for in, outs := range d["inputDrvs"].(map[string]any) {
					d["inputDrvs"].(map[string]any)[in] = map[string]any{"outputs": outs, "dynamicOutputs": map[string]any{}, "unknown": 1}
				}
			})
			for form, text := range map[string][]byte{
				"plain":   js,
				"wrapped": []byte(`{"` + string(c.DrvPath) + `":` + string(js) + `}`),
			} {
				d, err := store.ParseDerivationJSON(store.DefaultDir, text)
				if err != nil {
					t.Fatalf("%s: ParseDerivationJSON = %v", form, err)
				}
				if got := d.ATerm(); got != c.DrvText {
					t.Errorf("%s: ATerm() =\n%s\nwant\n%s", form, got, c.DrvText)
				}
			}
		})
	}
}

// TestAddDerivation_FixedOutputHashEncodings: a fixed output's hash may be
// given in base16, nix-base32, base64, SRI or "<algo>:<base32>" form, and
// (as newer Nix prints it) as an algorithm with "method": "nar"; every form
// gives Nix's output path, and the .drv holds base16, so the .drv path is
// Nix's too.
func TestAddDerivation_FixedOutputHashEncodings(t *testing.T) {
	st := storetest.NewStore(t, nil)
	storetest.AddBusybox(t, st)

	// The independent computation agrees with Nix on its fixtures.
	for _, name := range []string{"fod-flat-sha256", "fod-flat-sha1", "fod-recursive-sha256"} {
		c := loadJSONCase(t, name)
		out := c.Derivation["outputs"].(map[string]any)["out"].(map[string]any)
		algo := out["hashAlgo"].(string)
		digest, err := hex.DecodeString(out["hash"].(string))
		if err != nil {
			t.Fatal(err)
		}
		recursive := strings.HasPrefix(algo, "r:")
		outName := c.Outputs["out"].Name()
		if got := nixFixedOutputPath(outName, recursive, strings.TrimPrefix(algo, "r:"), digest); got != c.Outputs["out"] {
			t.Fatalf("%s: nixFixedOutputPath = %s, Nix made %s", name, got, c.Outputs["out"])
		}
	}

	content := []byte("hello fixed-output\n")
	s1, s512 := sha1.Sum(content), sha512.Sum512(content)
	cases := []struct {
		name    string
		fixture string
		// rename, algo and digest replace the fixture's name and hash;
		// "" keeps them.
		rename    string
		algo      string
		digest    []byte
		recursive bool
	}{
		{name: "flat-sha256", fixture: "fod-flat-sha256"},
		{name: "flat-sha1", fixture: "fod-flat-sha1"},
		{name: "recursive-sha256", fixture: "fod-recursive-sha256", recursive: true},
		{name: "flat-sha512", fixture: "fod-flat-sha256", rename: "fod-flat-sha512.txt", algo: "sha512", digest: s512[:]},
		{name: "recursive-sha512", fixture: "fod-recursive-sha256", rename: "fod-recursive-sha512", algo: "sha512", digest: s512[:], recursive: true},
		{name: "recursive-sha1", fixture: "fod-recursive-sha256", rename: "fod-recursive-sha1", algo: "sha1", digest: s1[:], recursive: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := loadJSONCase(t, tc.fixture)
			out := c.Derivation["outputs"].(map[string]any)["out"].(map[string]any)
			algo := strings.TrimPrefix(out["hashAlgo"].(string), "r:")
			digest, _ := hex.DecodeString(out["hash"].(string))
			name := c.Outputs["out"].Name()
			wantDrv := c.DrvPath
			if tc.rename != "" {
				name, algo, digest, wantDrv = tc.rename, tc.algo, tc.digest, ""
			}
			want := nixFixedOutputPath(name, tc.recursive, algo, digest)
			drvs := map[store.Path][]string{}
			forms := encodings(algo, digest)
			if tc.recursive {
				forms["method-nar"] = hex.EncodeToString(digest)
			}
			for form, hash := range forms {
				js := c.edit(t, func(d map[string]any) {
					blankOutputs(d)
					o := d["outputs"].(map[string]any)["out"].(map[string]any)
					o["hash"] = hash
					if tc.recursive {
						o["hashAlgo"] = "r:" + algo
					} else {
						o["hashAlgo"] = algo
					}
					if form == "method-nar" {
						o["hashAlgo"], o["method"] = algo, "nar"
					}
					if tc.rename != "" {
						env := d["env"].(map[string]any)
						env["name"], env["outputHashAlgo"], env["outputHash"] = name, algo, hex.EncodeToString(digest)
					}
				})
				p, err := addJSON(t, st, js)
				if err != nil {
					t.Errorf("%s: AddDerivation = %v", form, err)
					continue
				}
				drvs[p] = append(drvs[p], form)
				outs, err := st.DerivationOutputs(p)
				if err != nil || outs["out"] != want {
					t.Errorf("%s: output path = %s, %v; want %s", form, outs["out"], err, want)
				}
				d, err := st.ReadDerivation(p)
				if err != nil || d.Outputs["out"].Hash != hex.EncodeToString(digest) || d.Env["out"] != string(want) {
					t.Errorf("%s: the .drv has out = %+v and $out = %q, %v; want base16 %x and %s", form, d.Outputs["out"], d.Env["out"], err, digest, want)
				}
			}
			if len(drvs) != 1 {
				t.Errorf("the forms give different .drv paths: %v", drvs)
			}
			if _, ok := drvs[wantDrv]; wantDrv != "" && !ok {
				t.Errorf(".drv paths %v, want Nix's %s", drvs, wantDrv)
			}
		})
	}

	// A hash of another algorithm than the one named is refused.
	c := loadJSONCase(t, "fod-flat-sha256")
	js := c.edit(t, func(d map[string]any) {
		d["outputs"].(map[string]any)["out"].(map[string]any)["hash"] = "sha512-" + base64.StdEncoding.EncodeToString(s512[:])
	})
	if d, err := store.ParseDerivationJSON(st.Dir, js); err == nil || !strings.Contains(err.Error(), "should have type 'sha256'") {
		t.Errorf("ParseDerivationJSON(sha256 output with a sha512 SRI hash) = %+v, %v; want a type error", d, err)
	}
}

// TestAddDerivation_WrongOutputVariable: an output variable in env that is
// not the output's computed path is refused, whether the output path is
// given or left to be computed, and nothing is added.
func TestAddDerivation_WrongOutputVariable(t *testing.T) {
	st := storetest.NewStore(t, nil)
	storetest.AddBusybox(t, st)
	trivial, fod := loadJSONCase(t, "trivial"), loadJSONCase(t, "fod-flat-sha256")
	other := loadJSONCase(t, "refs-noref").Outputs["out"]
	cases := []struct {
		name string
		c    jsonCase
		edit func(d map[string]any)
	}{
		{"path-given", trivial, func(d map[string]any) { d["env"].(map[string]any)["out"] = string(other) }},
		{"path-computed", trivial, func(d map[string]any) {
			blankOutputs(d)
			d["env"].(map[string]any)["out"] = string(other)
		}},
		{"not-a-path", trivial, func(d map[string]any) { d["env"].(map[string]any)["out"] = "/tmp/out" }},
		{"fixed-output", fod, func(d map[string]any) {
			blankOutputs(d)
			d["env"].(map[string]any)["out"] = string(other)
		}},
	}
	before, err := st.AllValid()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := addJSON(t, st, tc.c.edit(t, tc.edit))
			want := "has incorrect environment variable 'out', should be '" + string(tc.c.Outputs["out"]) + "'"
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("AddDerivation = %s, %v; want an error containing %q", p, err, want)
			}
			if after, _ := st.AllValid(); !reflect.DeepEqual(after, before) {
				t.Errorf("valid paths %v after a refused add, want %v", after, before)
			}
		})
	}
}

// TestAddDerivation_Again: adding a derivation that is valid already
// succeeds with the same path, whether its outputs are given or computed,
// and changes nothing.
func TestAddDerivation_Again(t *testing.T) {
	st := storetest.NewStore(t, nil)
	storetest.AddBusybox(t, st)
	storetest.AddFixtureDerivations(t, st)
	before, err := st.AllValid()
	if err != nil {
		t.Fatal(err)
	}
	// These have input derivations, whose outputs' hashes go into theirs.
	for _, name := range []string{"trivial", "allowed-refs-violation", "structured-attrs", "multi-output"} {
		t.Run(name, func(t *testing.T) {
			c := loadJSONCase(t, name)
			info, err := st.PathInfo(c.DrvPath)
			if err != nil {
				t.Fatalf("PathInfo(%s) = %v", c.DrvPath, err)
			}
			for form, js := range map[string][]byte{"as-shown": c.edit(t, func(map[string]any) {}), "blanked": c.edit(t, blankOutputs)} {
				if p, err := addJSON(t, st, js); err != nil || p != c.DrvPath {
					t.Errorf("%s: AddDerivation again = %s, %v; want %s", form, p, err, c.DrvPath)
				}
			}
			again, err := st.PathInfo(c.DrvPath)
			if err != nil || !reflect.DeepEqual(again, info) {
				t.Errorf("PathInfo after adding again = %+v, %v; want %+v", again, err, info)
			}
			for out, p := range c.Outputs {
				refs, err := st.Derivers(p)
				if err != nil || len(refs) != 1 || refs[0].Drv != c.DrvPath || refs[0].Output != out {
					t.Errorf("Derivers(%s) = %v, %v; want only %s!%s", p, refs, err, c.DrvPath, out)
				}
			}
		})
	}
	if after, _ := st.AllValid(); !reflect.DeepEqual(after, before) {
		t.Errorf("valid paths changed from %d to %d", len(before), len(after))
	}
}
