package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/storefs/storefs/sandbox"
)

// These tests are about the spawner, the process that clones sandboxed
// children for a Runner (see protocol.go).

// runUntilStarted runs spec, whose builder prints "started", and calls
// then(); it returns what Run returned and how long it took after then.
func runUntilStarted(t *testing.T, r *sandbox.Runner, spec *sandbox.Spec, then func()) (*sandbox.Result, error, time.Duration) {
	t.Helper()
	var once sync.Once
	var after time.Time
	log := &syncBuffer{notify: func(s string) {
		if strings.Contains(s, "started") {
			once.Do(func() {
				then()
				after = time.Now()
			})
		}
	}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := r.Run(ctx, spec, log)
	if after.IsZero() {
		t.Fatalf("Run() = %+v, %v before the builder started; log:\n%s", res, err, log.String())
	}
	return res, err, time.Since(after)
}

// spawnerPid returns the pid of r's spawner, failing the test if it has
// none.
func spawnerPid(t *testing.T, r *sandbox.Runner) int {
	t.Helper()
	pid := sandbox.SpawnerPid(r)
	if pid == 0 {
		t.Fatal("the Runner has no spawner")
	}
	return pid
}

// TestRunner_Run_SpawnerDies kills the spawner while a build runs: the
// build fails at once, leaving nothing behind, and the next build gets a
// new spawner.
func TestRunner_Run_SpawnerDies(t *testing.T) {
	r := newRunner(t, nil)
	t.Cleanup(func() { r.Close() })
	runBuilderWith(t, r, newSpec(t, "mkdir $out")) // starts the spawner
	first := spawnerPid(t, r)

	spec := newSpec(t, "mkdir $out; sleep 1000 & echo started; sleep 1000")
	res, err, d := runUntilStarted(t, r, spec, func() { syscall.Kill(first, syscall.SIGKILL) })
	if err == nil {
		t.Fatalf("Run() = %+v, nil; want an error", res)
	}
	t.Logf("Run() = %v", err)
	if d > 30*time.Second {
		t.Errorf("Run took %v after the spawner died", d)
	}
	checkLeftovers(t, spec, res)
	if ents, _ := os.ReadDir(spec.OutputDir); len(ents) != 0 {
		t.Errorf("output of a failed build was moved: %v", ents)
	}

	spec = newSpec(t, "mkdir $out; echo ok > $out/r")
	runBuilderWith(t, r, spec)
	if got := readOutput(t, spec, "r"); got != "ok\n" {
		t.Errorf("r = %q, want %q", got, "ok\n")
	}
	if second := spawnerPid(t, r); second == first {
		t.Errorf("spawner pid %d after its death, want a new one", second)
	}
}

// TestRunner_Run_SpawnerDiesEarly kills the spawner at different moments
// of a build's start (before the request, while it clones the child,
// during the handshake): the build may fail, but Run returns promptly,
// leaving nothing behind, and the next build works.
func TestRunner_Run_SpawnerDiesEarly(t *testing.T) {
	r := newRunner(t, nil)
	t.Cleanup(func() { r.Close() })
	for _, delay := range []time.Duration{0, 100 * time.Microsecond, 500 * time.Microsecond, time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond, 5 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			runBuilderWith(t, r, newSpec(t, "mkdir $out")) // a spawner runs
			pid := spawnerPid(t, r)
			spec := newSpec(t, "mkdir $out; echo ok > $out/r")
			time.AfterFunc(delay, func() { syscall.Kill(pid, syscall.SIGKILL) })
			start := time.Now()
			log, res, err := tryBuilder(t, r, spec)
			if d := time.Since(start); d > 30*time.Second {
				t.Errorf("Run took %v", d)
			}
			if err == nil && (res.ExitCode != 0 || readOutput(t, spec, "r") != "ok\n") {
				t.Errorf("Run() = %+v, nil; want exit code 0 and the output; log:\n%s", res, log)
			}
			t.Logf("Run() = %v", err)
			waitGone(t, pid)
		})
	}
	runBuilderWith(t, r, newSpec(t, "mkdir $out"))
}

// TestRunner_Run_SpawnerDiesBetweenBuilds kills an idle spawner: the
// next build starts another one.
func TestRunner_Run_SpawnerDiesBetweenBuilds(t *testing.T) {
	r := newRunner(t, nil)
	t.Cleanup(func() { r.Close() })
	runBuilderWith(t, r, newSpec(t, "mkdir $out"))
	first := spawnerPid(t, r)
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, first)
	spec := newSpec(t, "mkdir $out; echo ok > $out/r")
	runBuilderWith(t, r, spec)
	if got := readOutput(t, spec, "r"); got != "ok\n" {
		t.Errorf("r = %q, want %q", got, "ok\n")
	}
}

// TestRunner_Run_SpawnerHangs stops the spawner: a build waiting for it
// still ends when its context does, and once the spawner goes on, the
// child it then starts for nobody is killed, and builds work again.
func TestRunner_Run_SpawnerHangs(t *testing.T) {
	r := newRunner(t, nil)
	t.Cleanup(func() { r.Close() })
	runBuilderWith(t, r, newSpec(t, "mkdir $out"))
	pid := spawnerPid(t, r)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}()

	spec := newSpec(t, "mkdir $out; sleep 1000")
	cause := errors.New("test gave up on the build")
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(100*time.Millisecond, func() { cancel(cause) })
	start := time.Now()
	res, err := r.Run(ctx, spec, &syncBuffer{})
	if !errors.Is(err, cause) {
		t.Errorf("Run() = %+v, %v; want %v", res, err, cause)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("Run took %v", d)
	}
	checkLeftovers(t, spec, res)

	syscall.Kill(pid, syscall.SIGCONT)
	stopped = false
	spec = newSpec(t, "mkdir $out; echo ok > $out/r")
	runBuilderWith(t, r, spec)
	if got := readOutput(t, spec, "r"); got != "ok\n" {
		t.Errorf("r = %q, want %q", got, "ok\n")
	}
	if got := spawnerPid(t, r); got != pid {
		t.Errorf("spawner pid = %d, want still %d", got, pid)
	}
	// The abandoned child is reaped, and forgotten, too.
	for deadline := time.Now().Add(30 * time.Second); sandbox.SpawnerChildren(r) != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d children of the spawner not reaped", sandbox.SpawnerChildren(r))
		}
		time.Sleep(time.Millisecond)
	}
}

// waitGone waits until our child pid was reaped. (A zombie is not enough:
// the leader of a killed process becomes one while its other threads may
// still hold its descriptors.)
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return
		}
		i := strings.LastIndexByte(string(stat), ')')
		if fields := strings.Fields(string(stat[i+1:])); len(fields) < 2 || fields[1] != strconv.Itoa(os.Getpid()) {
			return // reaped, and the pid reused
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("process %d still runs", pid)
}

// TestRunner_Run_ManyParallelBuilds runs more builds at once than there
// are cores, several rounds, through one spawner.
func TestRunner_Run_ManyParallelBuilds(t *testing.T) {
	const builders, rounds = 8, 3
	r := newRunner(t, nil)
	t.Cleanup(func() { r.Close() })
	var wg sync.WaitGroup
	pids := make(chan int, builders*rounds)
	for i := range builders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range rounds {
				want := fmt.Sprintf("%d.%d\n", i, j)
				spec := newSpec(t, "mkdir $out; echo "+strings.TrimSpace(want)+" > $out/r")
				log, res, err := tryBuilder(t, r, spec)
				if err != nil || res.ExitCode != 0 {
					t.Errorf("Run() = %+v, %v; want exit code 0; log:\n%s", res, err, log)
					return
				}
				if got := readOutput(t, spec, "r"); got != want {
					t.Errorf("r = %q, want %q", got, want)
				}
				pids <- sandbox.SpawnerPid(r)
			}
		}()
	}
	wg.Wait()
	close(pids)
	seen := map[int]bool{}
	for pid := range pids {
		seen[pid] = true
	}
	if len(seen) != 1 {
		t.Errorf("spawner pids %v, want one spawner for all builds", seen)
	}
}

// TestRunner_Run_CancelEarly cancels builds at different moments of
// their start (while the spawner clones the child, during the handshake,
// while the builder runs): Run returns the cause, leaves nothing behind,
// and the Runner goes on working.
func TestRunner_Run_CancelEarly(t *testing.T) {
	r := newRunner(t, nil)
	t.Cleanup(func() { r.Close() })
	cause := errors.New("test cancelled the build")
	for _, delay := range []time.Duration{0, 100 * time.Microsecond, 500 * time.Microsecond, time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			spec := newSpec(t, "mkdir $out; sleep 1000")
			ctx, cancel := context.WithCancelCause(context.Background())
			time.AfterFunc(delay, func() { cancel(cause) })
			res, err := r.Run(ctx, spec, &syncBuffer{})
			if !errors.Is(err, cause) {
				t.Errorf("Run() = %+v, %v; want %v", res, err, cause)
			}
			checkLeftovers(t, spec, res)
		})
	}
	runBuilderWith(t, r, newSpec(t, "mkdir $out"))
}

// TestRunner_Close checks that Close stops the spawner and leaves no
// descriptor open, that Run fails afterwards, and that Close may be
// called again.
func TestRunner_Close(t *testing.T) {
	before := openFds(t)
	r := newRunner(t, nil)
	for range 3 {
		runBuilderWith(t, r, newSpec(t, "mkdir $out"))
	}
	pid := spawnerPid(t, r)
	if err := r.Close(); err != nil {
		t.Fatalf("Close() = %v, want nil", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("kill(spawner %d, 0) = %v after Close, want ESRCH", pid, err)
	}
	for fd, target := range openFds(t) {
		if before[fd] != target {
			t.Errorf("descriptor %d (%s) open after Close, not before New", fd, target)
		}
	}
	spec := newSpec(t, "mkdir $out")
	if res, err := r.Run(context.Background(), spec, &syncBuffer{}); err == nil {
		t.Errorf("Run() after Close = %+v, nil; want an error", res)
	} else {
		t.Logf("Run() after Close = %v", err)
	}
	checkLeftovers(t, spec, nil)
	if err := r.Close(); err != nil {
		t.Errorf("second Close() = %v, want nil", err)
	}
}

// TestRunner_Close_DuringBuild closes the Runner under a running build,
// which fails at once and leaves nothing behind.
func TestRunner_Close_DuringBuild(t *testing.T) {
	r := newRunner(t, nil)
	spec := newSpec(t, "mkdir $out; sleep 1000 & echo started; sleep 1000")
	var closed sync.WaitGroup
	closed.Add(1)
	res, err, d := runUntilStarted(t, r, spec, func() {
		go func() {
			defer closed.Done()
			r.Close()
		}()
	})
	closed.Wait()
	if err == nil {
		t.Fatalf("Run() = %+v, nil; want an error", res)
	}
	t.Logf("Run() = %v", err)
	if d > 30*time.Second {
		t.Errorf("Run took %v after Close", d)
	}
	checkLeftovers(t, spec, res)
}

// openFds returns our open descriptors and what they refer to. (Runners
// of other tests may close theirs meanwhile, when collected, so only new
// descriptors tell a leak.)
func openFds(t *testing.T) map[int]string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	fds := map[int]string{}
	for _, e := range ents {
		fd, _ := strconv.Atoi(e.Name())
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil { // not ReadDir's own
			fds[fd] = target
		}
	}
	return fds
}
