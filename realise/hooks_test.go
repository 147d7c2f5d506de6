package realise_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/storefs/storefs/realise"
	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/cache"
	"github.com/storefs/storefs/store/storetest"
)

// notes returns the Note events' lines.
func (e *env) notes() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ev := range e.events {
		if ev.Kind == realise.Note {
			out = append(out, ev.Line)
		}
	}
	return out
}

// TestWorker_KeepFailed: a failed build's directory is kept and the worker
// says where, whether the builder failed or its outputs were refused.
func TestWorker_KeepFailed(t *testing.T) {
	e := newEnv(t, &realise.Options{KeepFailed: true})
	drv := addDrv(t, e.st, "failing", "echo evidence > $NIX_BUILD_TOP/evidence; exit 1")
	rep := e.realise(t, realise.Request{Targets: targetsOf(drv)})
	if !rep.Failed() {
		t.Fatal("the build succeeded")
	}
	notes := e.notes()
	if len(notes) != 1 || !strings.HasPrefix(notes[0], "note: keeping build directory '") {
		t.Fatalf("notes = %q", notes)
	}
	dir := strings.TrimSuffix(strings.TrimPrefix(notes[0], "note: keeping build directory '"), "'")
	if b, err := os.ReadFile(filepath.Join(dir, "evidence")); err != nil || string(b) != "evidence\n" {
		t.Errorf("kept directory has evidence %q, %v", b, err)
	}

	// A builder that succeeds but whose outputs are refused failed the
	// build too: Nix keeps its directory as well.
	e.mu.Lock()
	e.events = nil
	e.mu.Unlock()
	refused := addDrv(t, e.st, "no-output", "echo evidence > $NIX_BUILD_TOP/evidence")
	if rep := e.realise(t, realise.Request{Targets: targetsOf(refused)}); !rep.Failed() {
		t.Fatal("a build without its output succeeded")
	}
	notes = e.notes()
	if len(notes) != 1 || !strings.HasPrefix(notes[0], "note: keeping build directory '") {
		t.Fatalf("notes after refused outputs = %q", notes)
	}
	dir = strings.TrimSuffix(strings.TrimPrefix(notes[0], "note: keeping build directory '"), "'")
	if b, err := os.ReadFile(filepath.Join(dir, "evidence")); err != nil || string(b) != "evidence\n" {
		t.Errorf("kept directory of refused outputs has evidence %q, %v", b, err)
	}
}

// TestWorker_DiffHook: on a --check mismatch of a non-deterministic
// derivation the diff hook runs with both outputs, and the new one is kept
// as <path>.check.
func TestWorker_DiffHook(t *testing.T) {
	dir := t.TempDir()
	hook := filepath.Join(dir, "hook")
	os.WriteFile(hook, []byte("#!/bin/sh\necho \"diff hook: $1 $2 $3\"\n"), 0o755)
	e := newEnv(t, &realise.Options{DiffHook: hook, RunDiffHook: true})
	drv := addDrv(t, e.st, "random", "head -c 16 /dev/urandom > $out")
	if rep := e.realise(t, realise.Request{Targets: targetsOf(drv)}); rep.Failed() {
		t.Fatal(rep.Results[0].Err)
	}
	rep := e.realise(t, realise.Request{Targets: targetsOf(drv), Mode: realise.Check})
	res := rep.Results[0]
	if res.Status != realise.NotDeterministic || rep.Bits() != realise.BitNotDeterministic {
		t.Fatalf("check = %v bits %d, %v", res.Status, rep.Bits(), res.Err)
	}
	real := e.st.RealPath(outputOf(t, e.st, drv))
	want := "diff hook: " + real + " " + real + ".check " + string(drv)
	if notes := e.notes(); len(notes) != 1 || notes[0] != want {
		t.Errorf("notes = %q, want [%q]", notes, want)
	}
	if _, err := os.Stat(real + ".check"); err != nil {
		t.Errorf("the new output was not kept: %v", err)
	}
	if !strings.HasSuffix(res.Err.Msg, "differs from '"+real+".check'") {
		t.Errorf("error = %q", res.Err.Msg)
	}
	os.RemoveAll(real + ".check")
}

// TestWorker_PreBuildHook: a pre-build hook adds a path to one build's
// sandbox.
func TestWorker_PreBuildHook(t *testing.T) {
	dir := t.TempDir()
	shared := filepath.Join(dir, "shared")
	os.Mkdir(shared, 0o755)
	os.WriteFile(filepath.Join(shared, "data"), []byte("from the hook\n"), 0o644)
	hook := filepath.Join(dir, "hook")
	os.WriteFile(hook, []byte("#!/bin/sh\necho extra-sandbox-paths\necho /extra="+shared+"\necho\n"), 0o755)
	os.Chmod(dir, 0o755)
	e := newEnv(t, &realise.Options{PreBuildHook: hook})
	drv := addDrv(t, e.st, "hooked", "cat /extra/data > $out")
	if rep := e.realise(t, realise.Request{Targets: targetsOf(drv)}); rep.Failed() {
		t.Fatal(rep.Results[0].Err)
	}
	if b, _ := os.ReadFile(e.st.RealPath(outputOf(t, e.st, drv))); string(b) != "from the hook\n" {
		t.Errorf("output = %q", b)
	}
}

// TestWorker_AllowSubstitutesFalse: a derivation with allowSubstitutes =
// false is built even though a trusted cache has its output.
func TestWorker_AllowSubstitutesFalse(t *testing.T) {
	mk := func(st *store.Store) store.Path {
		bb := store.Path(storetest.BusyboxPath)
		d := &store.Derivation{
			Name: "no-subst", Outputs: map[string]store.DerivationOutput{"out": {}}, InputDrvs: map[store.Path][]string{},
			InputSrcs: []store.Path{bb}, Platform: "x86_64-linux", Builder: string(bb) + "/bin/busybox",
			Args: []string{"sh", "-c", "echo built > $out"}, Env: map[string]string{"allowSubstitutes": ""},
		}
		drv, err := st.AddDerivation(t.Context(), d)
		if err != nil {
			t.Fatal(err)
		}
		return drv
	}
	// Build it once and put the output in a signed cache.
	src := newEnv(t, nil)
	drv := mk(src.st)
	if rep := src.realise(t, realise.Request{Targets: targetsOf(drv)}); rep.Failed() {
		t.Fatal(rep.Results[0].Err)
	}
	key, err := cache.GenerateKey("test-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "cache")
	c, err := cache.NewFileCache(dir, &cache.Options{Compression: "zstd"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cache.CopyTo(t.Context(), src.st, cache.NewSigningCache(c, key), []store.Path{outputOf(t, src.st, drv)}, nil); err != nil {
		t.Fatal(err)
	}
	pub := key.PublicKey()
	keys, _ := cache.ParsePublicKeys([]string{pub.String()})
	reader, err := cache.Open("file://"+dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := newSubstEnv(t, nil, cache.NewSignatureCheckingCache(reader, keys))
	storetest.AddBusybox(t, e.st)
	mk(e.st)
	if rep := e.realise(t, realise.Request{Targets: targetsOf(drv)}); rep.Results[0].Status != realise.Built {
		t.Fatalf("status %v %v, want Built", rep.Results[0].Status, rep.Results[0].Err)
	}
	if n := e.substitutions(); n != 0 {
		t.Errorf("%d substitutions", n)
	}
}

// TestWorker_NoChroot: __noChroot is refused while the sandbox is enforced.
func TestWorker_NoChroot(t *testing.T) {
	e := newEnv(t, nil)
	bb := store.Path(storetest.BusyboxPath)
	d := &store.Derivation{
		Name: "impure", Outputs: map[string]store.DerivationOutput{"out": {}}, InputDrvs: map[store.Path][]string{},
		InputSrcs: []store.Path{bb}, Platform: "x86_64-linux", Builder: string(bb) + "/bin/busybox",
		Args: []string{"sh", "-c", "echo > $out"}, Env: map[string]string{"__noChroot": "1"},
	}
	drv, err := e.st.AddDerivation(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	rep := e.realise(t, realise.Request{Targets: targetsOf(drv)})
	want := "derivation '" + string(drv) + "' has '__noChroot' set, but that's not allowed when 'sandbox' is 'true'"
	if res := rep.Results[0]; res.Err == nil || res.Err.Msg != want {
		t.Errorf("error = %v, want %q", res.Err, want)
	}
	if len(e.builds()) != 0 {
		t.Errorf("a builder started")
	}
}
