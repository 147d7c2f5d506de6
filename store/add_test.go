package store_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/storetest"
)

// TestStore_AddPath_Busybox: Debian's static busybox as <dir>/bin/busybox
// gets the path Nix 2.8 gave it, with the NAR hash of the fixture cache.
func TestStore_AddPath_Busybox(t *testing.T) {
	st := storetest.NewStore(t, nil)
	p := storetest.AddBusybox(t, st)
	if p != storetest.BusyboxPath {
		t.Fatalf("AddPath(busybox) = %s, want %s", p, storetest.BusyboxPath)
	}
	info, err := st.PathInfo(p)
	if err != nil {
		t.Fatal(err)
	}
	// From cache-zstd/71fc7s32zl20dc955bhghy5dvalm7ndz.narinfo.
	if got, want := info.NARHash.String(), "sha256:0h2cvvd5bkprq91zyak0149xwqr6p5hc0vw1xrshlzfg6z8dlk29"; got != want {
		t.Errorf("NARHash = %s, want %s", got, want)
	}
	if info.NARSize != 1982736 {
		t.Errorf("NARSize = %d, want 1982736", info.NARSize)
	}
	if info.CA != "fixed:r:sha256:0h2cvvd5bkprq91zyak0149xwqr6p5hc0vw1xrshlzfg6z8dlk29" {
		t.Errorf("CA = %s", info.CA)
	}
	fi, err := os.Stat(filepath.Join(st.RealPath(p), "bin", "busybox"))
	if err != nil || fi.Mode().Perm() != 0o555 || fi.ModTime().Unix() != 1 {
		t.Errorf("bin/busybox = %v, %v; want mode 0555 and mtime 1", fi.Mode(), err)
	}
	// Adding it again is a no-op that gives the same path.
	if p2 := storetest.AddBusybox(t, st); p2 != p {
		t.Errorf("second AddPath = %s, want %s", p2, p)
	}
}

// TestStore_AddDerivation_Fixtures adds the fixture derivations from their
// JSON form with the output paths blanked: storefs fills them in and gets
// the .drv path Nix got.
func TestStore_AddDerivation_Fixtures(t *testing.T) {
	st := storetest.NewStore(t, nil)
	storetest.AddBusybox(t, st)
	dir := storetest.FixturesDir(t)
	ctx := context.Background()

	// Input derivations first: add every fixture .drv whose inputs are in.
	drvs := fixtureDrvs(t)
	for len(drvs) > 0 {
		progress := false
		for p, text := range drvs {
			d := parseFixture(t, p, text)
			ready := true
			for in := range d.InputDrvs {
				if ok, _ := st.IsValid(in); !ok {
					ready = false
				}
			}
			for _, src := range d.InputSrcs {
				if ok, _ := st.IsValid(src); !ok {
					ready = false
				}
			}
			if !ready {
				continue
			}
			// Blank the outputs as a person writing JSON would.
			for name, o := range d.Outputs {
				o.Path = ""
				d.Outputs[name] = o
				if _, ok := d.Env[name]; ok {
					d.Env[name] = ""
				}
			}
			got, err := st.AddDerivation(ctx, d)
			if err != nil {
				t.Fatalf("AddDerivation(%s) = %v", p, err)
			}
			if got != p {
				t.Fatalf("AddDerivation(%s) = %s", p, got)
			}
			delete(drvs, p)
			progress = true
		}
		if !progress {
			t.Fatalf("%d fixture derivations have inputs that are not fixtures, e.g. %v", len(drvs), drvs)
		}
	}

	// The output index knows every output's deriver.
	var exp struct {
		DrvPath string            `json:"drvPath"`
		Outputs map[string]string `json:"outputs"`
	}
	b, _ := os.ReadFile(filepath.Join(dir, "expected", "multi-output.json"))
	json.Unmarshal(b, &exp)
	for name, out := range exp.Outputs {
		refs, err := st.Derivers(store.Path(out))
		if err != nil || len(refs) != 1 || refs[0].Drv != store.Path(exp.DrvPath) || refs[0].Output != name {
			t.Errorf("Derivers(%s) = %v, %v; want %s!%s", out, refs, err, exp.DrvPath, name)
		}
	}
	outs, err := st.DerivationOutputs(store.Path(exp.DrvPath))
	if err != nil || len(outs) != len(exp.Outputs) {
		t.Errorf("DerivationOutputs = %v, %v; want %v", outs, err, exp.Outputs)
	}
}

func TestStore_AddDerivation_Refused(t *testing.T) {
	st := storetest.NewStore(t, nil)
	ctx := context.Background()
	mk := func(js string) *store.Derivation {
		d, err := store.ParseDerivationJSON(st.Dir, []byte(js))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	cases := map[string]string{
		"missing input source": `{"name":"x","outputs":{"out":{}},"inputSrcs":["/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox"],"inputDrvs":{},"system":"x86_64-linux","builder":"/bin/sh","args":[],"env":{}}`,
		"missing input drv":    `{"name":"x","outputs":{"out":{}},"inputSrcs":[],"inputDrvs":{"/nix/store/ylidkad964ccmaay0qrd9zdywj84gw6f-trivial.drv":["out"]},"system":"x86_64-linux","builder":"/bin/sh","args":[],"env":{}}`,
		"wrong output path":    `{"name":"x","outputs":{"out":{"path":"/nix/store/8z3rv77c71xvmyyijyry9760g7fbghah-trivial"}},"inputSrcs":[],"inputDrvs":{},"system":"x86_64-linux","builder":"/bin/sh","args":[],"env":{}}`,
	}
	for name, js := range cases {
		t.Run(name, func(t *testing.T) {
			if p, err := st.AddDerivation(ctx, mk(js)); err == nil {
				t.Errorf("AddDerivation = %s, want an error", p)
			}
			if all, _ := st.AllValid(); len(all) != 0 {
				t.Errorf("AllValid() = %v after a refused add", all)
			}
		})
	}
}
