package realise_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/storefs/storefs/realise"
	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/storetest"
)

// addDrv adds a derivation "sh -e -c script" built with busybox, whose
// environment has dep0, dep1, … set to the outputs of deps.
func addDrv(t testing.TB, st *store.Store, name, script string, deps ...store.Path) store.Path {
	t.Helper()
	bb := store.Path(storetest.BusyboxPath)
	d := &store.Derivation{
		Name:      name,
		Outputs:   map[string]store.DerivationOutput{"out": {}},
		InputDrvs: map[store.Path][]string{},
		InputSrcs: []store.Path{bb},
		Platform:  "x86_64-linux",
		Builder:   string(bb) + "/bin/busybox",
		Args:      []string{"sh", "-e", "-c", script},
		Env:       map[string]string{"name": name, "system": "x86_64-linux", "builder": string(bb) + "/bin/busybox"},
	}
	for i, dep := range deps {
		d.InputDrvs[dep] = []string{"out"}
		outs, err := st.DerivationOutputs(dep)
		if err != nil || outs["out"] == "" {
			t.Fatalf("outputs of %s = %v, %v", dep, outs, err)
		}
		d.Env[fmt.Sprintf("dep%d", i)] = string(outs["out"])
	}
	p, err := st.AddDerivation(context.Background(), d)
	if err != nil {
		t.Fatalf("AddDerivation(%s) = %v", name, err)
	}
	return p
}

// addDAG adds layers×width derivations, each depending on 3 of the
// previous layer, and returns them layer by layer.
func addDAG(t testing.TB, st *store.Store, prefix string, layers, width int) [][]store.Path {
	t.Helper()
	var dag [][]store.Path
	for l := 0; l < layers; l++ {
		var layer []store.Path
		for i := 0; i < width; i++ {
			var deps []store.Path
			script := fmt.Sprintf("echo %s-%d-%d > $out", prefix, l, i)
			if l > 0 {
				prev := dag[l-1]
				deps = []store.Path{prev[i%width], prev[(i+7)%width], prev[(i+13)%width]}
				script += " && cat $dep0 $dep1 $dep2 | wc -l >> $out"
			}
			layer = append(layer, addDrv(t, st, fmt.Sprintf("%s-%d-%d", prefix, l, i), script, deps...))
		}
		dag = append(dag, layer)
	}
	return dag
}

func targetsOf(drvs ...store.Path) []realise.Target {
	var ts []realise.Target
	for _, d := range drvs {
		ts = append(ts, realise.Target{Path: d})
	}
	return ts
}

// TestWorker_DAG_BuildsEachNodeOnce: a 200-node DAG, realised from its last
// layer, builds every node exactly once, with one and with two jobs.
func TestWorker_DAG_BuildsEachNodeOnce(t *testing.T) {
	for _, jobs := range []int{1, 2} {
		t.Run(fmt.Sprintf("j%d", jobs), func(t *testing.T) {
			e := newEnv(t, &realise.Options{MaxJobs: jobs})
			dag := addDAG(t, e.st, "dag", 10, 20)
			rep := e.realise(t, realise.Request{Targets: targetsOf(dag[9]...)})
			if rep.Failed() {
				t.Fatalf("DAG failed: %+v", rep.Results)
			}
			builds := e.builds()
			for _, layer := range dag {
				for _, d := range layer {
					if builds[d] != 1 {
						t.Errorf("%s built %d times, want 1", d, builds[d])
					}
				}
			}
			if len(builds) != 200 {
				t.Errorf("%d derivations built, want 200", len(builds))
			}
			// Again: everything is valid, nothing is built.
			before := len(e.builds())
			rep = e.realise(t, realise.Request{Targets: targetsOf(dag[9]...)})
			if rep.Failed() || len(e.builds()) != before {
				t.Errorf("second realise built again or failed: %+v", rep.Results)
			}
			for _, res := range rep.Results {
				if res.Status != realise.AlreadyValid {
					t.Errorf("second realise: %v, want AlreadyValid", res.Status)
				}
			}
		})
	}
}

// TestWorker_KeepGoing: one failing leaf fails its dependents; without
// keep-going the rest stops, with it everything else is built.
func TestWorker_KeepGoing(t *testing.T) {
	for _, keepGoing := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep-going=%v", keepGoing), func(t *testing.T) {
			// The independent derivations wait for a slow gate, so the
			// failing leaf fails long before any of them can start.
			e := newEnv(t, &realise.Options{MaxJobs: 2})
			bad := addDrv(t, e.st, "bad-leaf", "echo failing; exit 1")
			gate := addDrv(t, e.st, "gate", "sleep 2; echo > $out")
			var good []store.Path
			for i := 0; i < 6; i++ {
				good = append(good, addDrv(t, e.st, fmt.Sprintf("good-%d", i), fmt.Sprintf("echo %d > $out", i), gate))
			}
			top := addDrv(t, e.st, "top", "cat $dep0 > $out", bad)
			start := time.Now()
			rep := e.realise(t, realise.Request{Targets: targetsOf(append([]store.Path{top}, good...)...), KeepGoing: keepGoing})
			if !keepGoing {
				if d := time.Since(start); d > 1500*time.Millisecond {
					t.Errorf("without keep-going the request took %v: it waited for the gate", d)
				}
				// Had the gate's builder been left running, it would
				// finish and be registered meanwhile.
				time.Sleep(3 * time.Second)
				if ok, _ := e.st.IsValid(outputOf(t, e.st, gate)); ok {
					t.Errorf("without keep-going the running gate build was not stopped")
				}
			}
			if got := rep.Results[0].Status; got != realise.DependencyFailed {
				t.Errorf("top: %v, want DependencyFailed", got)
			}
			if rep.Bits() != realise.BitBuildFailure {
				t.Errorf("bits = %d, want %d", rep.Bits(), realise.BitBuildFailure)
			}
			built := 0
			for _, g := range good {
				if ok, _ := e.st.IsValid(outputOf(t, e.st, g)); ok {
					built++
				}
			}
			if keepGoing && built != len(good) {
				t.Errorf("keep-going built %d of %d independent derivations", built, len(good))
			}
			if !keepGoing && built != 0 {
				t.Errorf("without keep-going %d independent derivations were built after the failure", built)
			}
		})
	}
}

func outputOf(t testing.TB, st *store.Store, drv store.Path) store.Path {
	t.Helper()
	outs, err := st.DerivationOutputs(drv)
	if err != nil {
		t.Fatal(err)
	}
	return outs["out"]
}

// TestWorker_Limits: timeout, max-silent-time and max-build-log-size kill
// the builder with Nix's statuses and messages, and leave nothing valid.
func TestWorker_Limits(t *testing.T) {
	cases := []struct {
		name   string
		opts   realise.Options
		script string
		status realise.Status
		bits   realise.ExitBits
		msg    string
	}{
		{"max-silent-time", realise.Options{MaxSilentTime: time.Second}, "echo hi; sleep 30; echo > $out", realise.TimedOut, realise.BitTimedOut | realise.BitBuildFailure, "timed out after 1 seconds of silence"},
		{"timeout", realise.Options{Timeout: time.Second}, "while true; do echo tick; sleep 0.2; done", realise.TimedOut, realise.BitTimedOut | realise.BitBuildFailure, "timed out after 1 seconds"},
		{"max-build-log-size", realise.Options{MaxLogSize: 10000}, "while true; do echo 0123456789; done", realise.LogLimitExceeded, 0, "killed after writing more than 10000 bytes of log output"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, &tc.opts)
			drv := addDrv(t, e.st, "limited", tc.script)
			start := time.Now()
			rep := e.realise(t, realise.Request{Targets: targetsOf(drv)})
			res := rep.Results[0]
			if res.Status != tc.status || rep.Bits() != tc.bits {
				t.Fatalf("status %v bits %d, want %v bits %d; err %v", res.Status, rep.Bits(), tc.status, tc.bits, res.Err)
			}
			if !strings.Contains(res.Err.Msg, tc.msg) || !strings.Contains(res.Err.Msg, string(drv)) {
				t.Errorf("error %q, want it to name %s and say %q", res.Err.Msg, drv, tc.msg)
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("the limit took %v to fire", d)
			}
			if ok, _ := e.st.IsValid(outputOf(t, e.st, drv)); ok {
				t.Errorf("output became valid")
			}
		})
	}
}

// TestWorker_Cancel: cancelling a realisation mid-build kills the builder
// and leaves no valid output and nothing in the temporary area.
func TestWorker_Cancel(t *testing.T) {
	e := newEnv(t, nil)
	drv := addDrv(t, e.st, "slow", "echo started; sleep 60; echo > $out")
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	unsub := e.w.Subscribe(func(ev realise.Event) {
		if ev.Kind == realise.BuildLog && ev.Line == "started" {
			close(started)
		}
	})
	defer unsub()
	done := make(chan error, 1)
	go func() {
		_, err := e.w.Realise(ctx, realise.Request{Targets: targetsOf(drv)})
		done <- err
	}()
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the build did not start")
	}
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("Realise after cancel = nil error, want the context's")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Realise did not return after cancel")
	}
	// The orphaned goal ends: its builder is killed and it cleans up.
	deadline := time.Now().Add(10 * time.Second)
	for {
		entries, _ := os.ReadDir(filepath.Join(e.st.RealDir(), ".tmp"))
		if len(entries) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("temporary area still holds %v", entries)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ok, _ := e.st.IsValid(outputOf(t, e.st, drv)); ok {
		t.Errorf("output of a cancelled build is valid")
	}
}

// TestWorker_ConcurrentRequestsShareGoals: requests for the same paths at
// the same time build each derivation once.
func TestWorker_ConcurrentRequestsShareGoals(t *testing.T) {
	e := newEnv(t, &realise.Options{MaxJobs: 2})
	dag := addDAG(t, e.st, "shared", 4, 5)
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		go func(i int) {
			rep, err := e.w.Realise(context.Background(), realise.Request{Targets: targetsOf(dag[3][i%5])})
			if err == nil && rep.Failed() {
				err = rep.Results[0].Err
			}
			errs <- err
		}(i)
	}
	for i := 0; i < 8; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for d, n := range e.builds() {
		if n != 1 {
			t.Errorf("%s built %d times", d, n)
		}
	}
}

// TestWorker_PostBuildHook: the hook runs after a successful build with
// DRV_PATH and OUT_PATHS.
func TestWorker_PostBuildHook(t *testing.T) {
	dir := t.TempDir()
	record := filepath.Join(dir, "record")
	hook := filepath.Join(dir, "hook")
	os.WriteFile(hook, []byte("#!/bin/sh\necho \"$DRV_PATH $OUT_PATHS\" >> "+record+"\n"), 0o755)
	e := newEnv(t, &realise.Options{PostBuildHook: hook})
	drv := addDrv(t, e.st, "hooked", "echo > $out")
	if rep := e.realise(t, realise.Request{Targets: targetsOf(drv)}); rep.Failed() {
		t.Fatal(rep.Results[0].Err)
	}
	got, err := os.ReadFile(record)
	want := fmt.Sprintf("%s %s\n", drv, outputOf(t, e.st, drv))
	if err != nil || string(got) != want {
		t.Errorf("hook recorded %q, %v; want %q", got, err, want)
	}
}

// TestWorker_Repair: --repair rebuilds an output whose contents were
// changed behind the store's back.
func TestWorker_Repair(t *testing.T) {
	e := newEnv(t, nil)
	drv := addDrv(t, e.st, "repairable", "echo original > $out")
	if rep := e.realise(t, realise.Request{Targets: targetsOf(drv)}); rep.Failed() {
		t.Fatal(rep.Results[0].Err)
	}
	out := outputOf(t, e.st, drv)
	real := e.st.RealPath(out)
	os.Chmod(real, 0o644)
	if err := os.WriteFile(real, []byte("tampered\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	rep := e.realise(t, realise.Request{Targets: targetsOf(drv), Mode: realise.Repair})
	if rep.Failed() {
		t.Fatalf("repair failed: %v", rep.Results[0].Err)
	}
	if got, _ := os.ReadFile(real); string(got) != "original\n" {
		t.Errorf("after repair the output holds %q", got)
	}
}

// TestWorker_PlatformAndFeatures: a derivation for another system or
// needing a missing feature fails before any builder starts.
func TestWorker_PlatformAndFeatures(t *testing.T) {
	e := newEnv(t, &realise.Options{SystemFeatures: []string{"big-parallel"}})
	d := &store.Derivation{
		Name: "foreign", Outputs: map[string]store.DerivationOutput{"out": {}}, InputDrvs: map[store.Path][]string{},
		InputSrcs: []store.Path{}, Platform: "aarch64-linux", Builder: "/bin/sh", Args: []string{},
		Env: map[string]string{"requiredSystemFeatures": "kvm"},
	}
	drv, err := e.st.AddDerivation(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	rep := e.realise(t, realise.Request{Targets: targetsOf(drv)})
	want := fmt.Sprintf("a 'aarch64-linux' with features {kvm} is required to build '%s', but I am a 'x86_64-linux' with features {big-parallel}", drv)
	if res := rep.Results[0]; res.Err == nil || res.Err.Msg != want {
		t.Errorf("error = %v, want %q", res.Err, want)
	}
	if len(e.builds()) != 0 {
		t.Errorf("a builder started: %v", e.builds())
	}
}
