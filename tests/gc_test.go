package tests

import (
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestCLI_GCRoots: realise --add-root makes an indirect root that keeps
// the output alive; gc deletes what nothing keeps; removing the link
// frees the output at the next gc.
func TestCLI_GCRoots(t *testing.T) {
	in := newInstance(t)
	in.ok("add", busyboxDir(t))
	drv, out := in.addDrv("rooted", "echo kept > $out", nil)
	_, other := in.addDrv("unrooted", "echo gone > $out", nil)
	in.ok("realise", other)
	result := filepath.Join(t.TempDir(), "result")
	if got := strings.TrimSpace(in.ok("realise", "--add-root", result, drv)); got != out {
		t.Fatalf("realise --add-root = %q", got)
	}
	if target, err := os.Readlink(result); err != nil || target != out {
		t.Fatalf("result -> %q, %v", target, err)
	}
	if roots := in.ok("roots"); !strings.Contains(roots, result+" -> "+out) {
		t.Errorf("roots = %q", roots)
	}
	dry := in.ok("gc", "--dry-run")
	if !strings.Contains(dry, other) || strings.Contains(dry, out+"\n") {
		t.Errorf("gc --dry-run = %q", dry)
	}
	r := in.run("", "gc")
	if r.code != 0 || !strings.Contains(r.stderr, "deleting '"+other+"'") {
		t.Fatalf("gc: %d %s", r.code, r.stderr)
	}
	in.ok("path-info", out)
	if r := in.run("", "path-info", other); r.code == 0 {
		t.Errorf("%s survived gc", other)
	}
	os.Remove(result)
	in.ok("gc")
	if r := in.run("", "path-info", out); r.code == 0 {
		t.Errorf("%s survived gc after its root was removed", out)
	}
	in.ok("verify", "--check-contents")
}

// TestCLI_Verify: verify finds a deleted file, a modified file, a stray
// directory and a missing reference; --repair restores the original
// contents of the first two.
func TestCLI_Verify(t *testing.T) {
	in := newInstance(t)
	in.ok("add", busyboxDir(t))
	drv, out := in.addDrv("victim", "mkdir $out; echo one > $out/a; echo two > $out/b", nil)
	in.ok("realise", drv)
	real := filepath.Join(in.state, "store", filepath.Base(out))
	os.Chmod(real, 0o755)
	os.Remove(filepath.Join(real, "a"))
	os.Chmod(filepath.Join(real, "b"), 0o644)
	os.WriteFile(filepath.Join(real, "b"), []byte("tampered\n"), 0o444)
	stray := filepath.Join(in.state, "store", "00000000000000000000000000000000-stray")
	os.Mkdir(stray, 0o755)
	r := in.run("", "verify", "--check-contents")
	if r.code == 0 || !strings.Contains(r.stderr, "path '"+out+"' was modified!") || !strings.Contains(r.stderr, "-stray' in the backing store is not a valid path") {
		t.Fatalf("verify: exit %d\n%s", r.code, r.stderr)
	}
	r = in.run("", "verify", "--repair")
	if !strings.Contains(r.stderr, "repaired '"+out+"'") {
		t.Fatalf("verify --repair: exit %d\n%s", r.code, r.stderr)
	}
	for name, want := range map[string]string{"a": "one\n", "b": "two\n"} {
		if b, err := os.ReadFile(filepath.Join(real, name)); err != nil || string(b) != want {
			t.Errorf("after repair %s = %q, %v, want %q", name, b, err, want)
		}
	}
	os.RemoveAll(stray)
	in.ok("verify", "--check-contents")

	t.Run("MissingReference", func(t *testing.T) {
		// holder refers to target; target then disappears from the
		// database (its contents stay, now a stray entry), breaking
		// holder's closure.
		targetDrv, target := in.addDrv("ref-target", "echo target > $out", nil)
		holderDrv, holder := in.addDrv("ref-holder", "echo $dep0 > $out", map[string]string{targetDrv: target})
		in.ok("realise", holderDrv)
		if refs := in.ok("query", "--references", holder); !strings.Contains(refs, target) {
			t.Fatalf("references of %s = %q, want %s among them", holder, refs, target)
		}
		forgetPath(t, in, target)
		want := "path '" + holder + "' refers to invalid path '" + target + "'"
		for _, args := range [][]string{{"verify"}, {"verify", "--check-contents"}, {"verify", "--repair"}} {
			r := in.run("", args...)
			if r.code == 0 || !strings.Contains(r.stderr, want) {
				t.Errorf("storefs %s: exit %d, want non-zero and %q in\n%s", strings.Join(args, " "), r.code, want, r.stderr)
			}
		}
	})
}

// forgetPath removes p's entry from the path-info database of the
// (closed) store of in, as a damaged or hand-edited database would,
// leaving every other record (referrer edges, contents) in place.
func forgetPath(t *testing.T, in *instance, p string) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(in.state, "db", "storefs.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("opening the database: %v", err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("paths"))
		if b == nil || b.Get([]byte(filepath.Base(p))) == nil {
			return fmt.Errorf("%s is not in the paths bucket", p)
		}
		return b.Delete([]byte(filepath.Base(p)))
	})
	if err != nil {
		t.Fatalf("removing %s from the database: %v", p, err)
	}
}

// TestMount_GC: gc while mounted makes deleted paths disappear from the
// mount, and a gc during a build and a blocked lookup deletes nothing they
// use.
func TestMount_GC(t *testing.T) {
	in := newInstance(t)
	in.ok("add", busyboxDir(t))
	_, doomed := in.addDrv("doomed", "echo doomed > $out", nil)
	depDrv, dep := in.addDrv("dep", "echo dep > $out", nil)
	in.ok("realise", depDrv)
	drv, slow := in.addDrv("slow-consumer", "sleep 2; cat $dep0 > $out", map[string]string{depDrv: dep})
	in.ok("realise", doomed)
	m := in.mount()
	if out, err := sh(t, "cat "+m.path(doomed)); err != nil || out != "doomed\n" {
		t.Fatalf("cat before gc = %q, %v", out, err)
	}
	// A lookup that builds slow-consumer, whose input dep and busybox are
	// roots of nothing but the running build.
	waiter := exec.Command("/bin/cat", m.path(slow))
	if err := waiter.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for m.builds(drv) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	// Left in the temporary area by nothing this daemon runs: gc removes
	// it, and not the running build's directory there.
	leftover := filepath.Join(in.state, "store", ".tmp", "build-of-a-dead-run")
	if err := os.MkdirAll(leftover, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(leftover, "half-made"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	r := in.run("", "gc")
	if r.code != 0 {
		t.Fatalf("gc: %s", r.stderr)
	}
	if _, err := os.Lstat(leftover); !os.IsNotExist(err) {
		t.Errorf("Lstat(%s) = %v after gc, want it removed", leftover, err)
	}
	var freed float64
	if i := strings.Index(r.stderr, "leftovers of interrupted work removed, "); i < 0 {
		t.Errorf("gc output does not report the leftovers:\n%s", r.stderr)
	} else if fmt.Sscanf(r.stderr[i:], "leftovers of interrupted work removed, %f MiB freed", &freed); freed < 1 {
		t.Errorf("gc reports %.2f MiB of leftovers freed, want at least 1:\n%s", freed, r.stderr)
	}
	for _, kept := range []string{dep, busyboxPath} {
		if strings.Contains(r.stderr, "deleting '"+kept+"'") {
			t.Errorf("gc deleted %s, an input of a running build", kept)
		}
	}
	if err := waiter.Wait(); err != nil {
		t.Errorf("the lookup that built during gc failed: %v", err)
	}
	if out, err := sh(t, "cat "+m.path(doomed)); err == nil {
		t.Errorf("cat after gc = %q, want ENOENT", out)
	}
}

// TestCrash_KillAnywhere kills storefs with SIGKILL at random points of
// builds, substitutions and garbage collections, many times, and checks
// after each that the store verifies clean (contents included) and, at
// the end, that a fresh realisation completes with the same results.
// STOREFS_CRASH_POINTS sets the number of kills (default 50); only runs
// that SIGKILL ended count.
func TestCrash_KillAnywhere(t *testing.T) {
	points := 50
	if s := os.Getenv("STOREFS_CRASH_POINTS"); s != "" {
		fmt.Sscan(s, &points)
	}
	// A cache holding half of the DAG's outputs, so that runs substitute
	// some paths and build others.
	src := newInstance(t)
	src.ok("add", busyboxDir(t))
	dag := addDAGCLI(src, 4, 5)
	for i, layer := range dag {
		if i%2 == 0 {
			src.ok(append([]string{"realise"}, drvsOf(layer)...)...)
		}
	}
	keyDir := t.TempDir()
	src.ok("key", "generate", "crash-1", filepath.Join(keyDir, "k.sec"), filepath.Join(keyDir, "k.pub"))
	cacheDir := filepath.Join(t.TempDir(), "cache")
	var cached []string
	for i, layer := range dag {
		if i%2 == 0 {
			for _, n := range layer {
				cached = append(cached, n.out)
			}
		}
	}
	src.ok(append([]string{"copy", "--to", "file://" + cacheDir + "?compression=zstd&secret-key=" + filepath.Join(keyDir, "k.sec")}, cached...)...)
	pub, _ := os.ReadFile(filepath.Join(keyDir, "k.pub"))
	opts := []string{"--option", "substituters", "file://" + cacheDir, "--option", "trusted-public-keys", strings.TrimSpace(string(pub))}

	in := newInstance(t)
	in.ok("add", busyboxDir(t))
	for _, layer := range dag {
		for _, n := range layer {
			r := in.run(n.json, "derivation", "add")
			if r.code != 0 {
				t.Fatal(r.stderr)
			}
		}
	}
	tops := drvsOf(dag[len(dag)-1])
	// The derivations are roots (the gc runs would delete them); their
	// outputs are not, so runs keep building and collecting them.
	roots := filepath.Join(in.state, "gcroots")
	os.MkdirAll(roots, 0o755)
	for i, d := range tops {
		os.Symlink(d, filepath.Join(roots, fmt.Sprint("top-", i)))
	}
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	// maxDelay is, per kind of run, the longest wait before the kill. A
	// run that ends before its kill is not a kill point; its kind's delay
	// then shrinks towards how long that run took (at most by half: the
	// next run may have more to do), and each kill doubles it again, so
	// the loop reaches the kill points whether the runs are slow (building)
	// or quick (a gc, or nothing left to build), and waits no longer than
	// a run lasts.
	const longest = 400 * time.Millisecond
	maxDelay := map[string]time.Duration{"gc": longest, "realise": longest}
	kills, runs := map[string]int{}, 0
	for kills["gc"]+kills["realise"] < points {
		if runs >= 4*points {
			t.Fatalf("only %d of %d runs were killed before they ended, want %d kill points", kills["gc"]+kills["realise"], runs, points)
		}
		kind, args := "realise", append(append(append([]string{}, opts...), "realise", "-j", "2"), tops...)
		if runs%4 == 3 {
			kind, args = "gc", []string{"gc"}
		}
		runs++
		cmd := exec.Command(storefsBin, append([]string{"--state-dir", in.state}, args...)...)
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ended := make(chan time.Duration, 1)
		go func() {
			cmd.Wait()
			ended <- time.Since(start)
		}()
		var took time.Duration
		select {
		case <-time.After(time.Duration(rng.Int63n(int64(maxDelay[kind])))):
			cmd.Process.Signal(syscall.SIGKILL)
			took = <-ended
		case took = <-ended:
		}
		// Signal succeeds on a process that has exited but is not reaped
		// yet, so only the wait status tells a kill point.
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			kills[kind]++
			maxDelay[kind] = min(2*maxDelay[kind], longest)
		} else {
			maxDelay[kind] = max(min(maxDelay[kind], took), maxDelay[kind]/2, time.Millisecond)
		}
		// The builders die with their PID namespace; wait for it.
		for j := 0; j < 100 && len(processesOfBuilds(t)) > 0; j++ {
			time.Sleep(10 * time.Millisecond)
		}
		if r := in.run("", "verify", "--check-contents"); r.code != 0 {
			t.Fatalf("after run %d of %v (ended: %v): verify failed:\n%s", runs, args, cmd.ProcessState, r.stderr)
		}
	}
	t.Logf("%d kill points (%d in gc) in %d runs, all verified clean", kills["gc"]+kills["realise"], kills["gc"], runs)
	out := in.ok(append(append(append([]string{}, opts...), "realise"), tops...)...)
	want := src.ok(append([]string{"realise"}, tops...)...)
	if out != want {
		t.Errorf("after the kills realise printed\n%s\nwant\n%s", out, want)
	}
	for _, n := range dag[len(dag)-1] {
		a, b := in.ok("hash", "path", filepath.Join(in.state, "store", filepath.Base(n.out))), src.ok("hash", "path", filepath.Join(src.state, "store", filepath.Base(n.out)))
		if a != b {
			t.Errorf("%s differs after the kills", n.out)
		}
	}
	in.ok("verify", "--check-contents")
}

// dagNode is one derivation added through the CLI.
type dagNode struct{ drv, out, json string }

// addDAGCLI adds layers×width derivations to in, each depending on two of
// the previous layer.
func addDAGCLI(in *instance, layers, width int) [][]dagNode {
	var dag [][]dagNode
	for l := 0; l < layers; l++ {
		var layer []dagNode
		for i := 0; i < width; i++ {
			deps := map[string]string{}
			if l > 0 {
				for _, p := range []dagNode{dag[l-1][i], dag[l-1][(i+1)%width]} {
					deps[p.drv] = p.out
				}
			}
			js := drvJSON(fmt.Sprintf("crash-%d-%d", l, i), "mkdir $out; i=0; while [ $i -lt 50 ]; do echo $i > $out/f$i; i=$((i+1)); done; for d in $dep0 $dep1; do cat $d/f1 >> $out/deps; done", deps)
			r := in.run(js, "derivation", "add")
			if r.code != 0 {
				in.t.Fatalf("derivation add: %s", r.stderr)
			}
			drv := strings.TrimSpace(r.stdout)
			layer = append(layer, dagNode{drv: drv, out: strings.TrimSpace(in.ok("query", "--outputs", drv)), json: js})
		}
		dag = append(dag, layer)
	}
	return dag
}

func drvsOf(layer []dagNode) []string {
	var out []string
	for _, n := range layer {
		out = append(out, n.drv)
	}
	return out
}
