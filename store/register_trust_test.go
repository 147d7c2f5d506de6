package store_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/storetest"
)

// busyboxDrv is a derivation "sh -c script" built by busybox, outputs to
// be filled in.
func busyboxDrv(name, script string) *store.Derivation {
	bb := store.Path(storetest.BusyboxPath)
	return &store.Derivation{
		Name:      name,
		Outputs:   map[string]store.DerivationOutput{"out": {}},
		InputDrvs: map[store.Path][]string{},
		InputSrcs: []store.Path{bb},
		Platform:  "x86_64-linux",
		Builder:   string(bb) + "/bin/busybox",
		Args:      []string{"sh", "-e", "-c", script},
		Env:       map[string]string{"name": name},
	}
}

// makeValid registers p with a file holding contents, as if it had been
// built or substituted.
func makeValid(t *testing.T, st *store.Store, p store.Path, contents string) {
	t.Helper()
	tmp, err := st.MkdirTemp("test-")
	if err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(tmp, "tree")
	if err := os.WriteFile(tree, []byte(contents), 0o644); err != nil {
		t.Fatal(err)
	}
	sr, err := store.ScanPath(tree, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddTree(context.Background(), tree, &store.PathInfo{Path: p, NARHash: sr.NARHash, NARSize: sr.NARSize}); err != nil {
		t.Fatalf("AddTree(%s) = %v", p, err)
	}
	os.Remove(tmp)
}

// TestRegister_ForgedDerivationOutputs: a .drv whose declared outputs are
// not the paths its contents hash to (an output path taken from another
// derivation, valid with other contents or not built yet) must not become
// valid, whichever way it comes in: as text (`storefs add --text x.drv`,
// builtins.toFile) or by substitution, which both end in Register. Nix's
// registerValidPaths checks every .drv with checkDerivationOutputs for
// this reason; otherwise the output index would name the forged .drv as a
// deriver of the victim's path, and building it (on lookup, --repair,
// --check) would put the attacker's contents there.
func TestRegister_ForgedDerivationOutputs(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewStore(t, nil)
	storetest.AddBusybox(t, st)

	victim := busyboxDrv("victim", "echo good > $out")
	victimDrv, err := st.AddDerivation(ctx, victim)
	if err != nil {
		t.Fatal(err)
	}
	victimOut := victim.Outputs["out"].Path
	pending := busyboxDrv("pending", "echo pending > $out")
	pendingDrv, err := st.AddDerivation(ctx, pending)
	if err != nil {
		t.Fatal(err)
	}
	pendingOut := pending.Outputs["out"].Path
	makeValid(t, st, victimOut, "good\n")
	before, err := st.PathInfo(victimOut)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		target store.Path // the output path the forged .drv claims
	}{
		{"ValidPathOfOtherContents", victimOut},
		{"OutputNotBuiltYet", pendingOut},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evil := busyboxDrv("victim", "echo evil > $out")
			if tc.target == pendingOut {
				evil.Name = "pending"
			}
			evil.Outputs["out"] = store.DerivationOutput{Path: tc.target}
			evil.Env["out"] = string(tc.target)
			text := evil.ATerm()
			p, err := st.AddText(ctx, evil.Name+".drv", []byte(text), evil.References())
			if err == nil {
				t.Errorf("AddText(forged %s.drv claiming %s) = %s, nil; want a refusal", evil.Name, tc.target, p)
			} else if !strings.Contains(err.Error(), "incorrect output") {
				t.Errorf("AddText(forged .drv) = %v, want Nix's \"has incorrect output\" error", err)
			}
			if p != "" {
				if ok, _ := st.IsValid(p); ok {
					t.Errorf("the forged derivation %s is valid", p)
				}
			}
			derivers, err := st.Derivers(tc.target)
			if err != nil {
				t.Fatal(err)
			}
			want := victimDrv
			if tc.target == pendingOut {
				want = pendingDrv
			}
			if len(derivers) != 1 || derivers[0].Drv != want {
				t.Errorf("Derivers(%s) = %v, want only %s", tc.target, derivers, want)
			}
		})
	}
	after, err := st.PathInfo(victimOut)
	if err != nil || !after.NARHash.Equal(before.NARHash) {
		t.Errorf("PathInfo(%s) after the attempts = %v, %v; want it unchanged", victimOut, after, err)
	}

	// The genuine derivations still register, alone and with their
	// inputs in one batch.
	dep := busyboxDrv("dep", "echo dep > $out")
	if _, err := st.AddDerivation(ctx, dep); err != nil {
		t.Fatalf("AddDerivation(dep) = %v", err)
	}
	if refs := dep.References(); !slices.Contains(refs, store.Path(storetest.BusyboxPath)) {
		t.Fatalf("References() = %v", refs)
	}
}
