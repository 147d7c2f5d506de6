package sandbox_test

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/storefs/storefs/sandbox"
)

// These tests are about the warm child, the sandbox child a Runner keeps
// started ahead of its next build (see warm_linux.go).

// warmChild waits until r has a started warm child and returns its pid
// and host uid; it skips the test when r has no spawner, and so no warm
// child.
func warmChild(t *testing.T, r *sandbox.Runner) (pid, uid int) {
	t.Helper()
	if sandbox.SpawnerPid(r) == 0 {
		t.Skip("no spawner (kernel without pidfds): no warm child")
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if pid, uid := sandbox.WarmChild(r); pid != 0 {
			return pid, uid
		}
	}
	t.Fatal("no warm child started")
	return 0, 0
}

// TestRunner_Run_WarmChild checks that the build after the first runs in
// the child started ahead of it, and that Close leaves no warm child
// behind.
func TestRunner_Run_WarmChild(t *testing.T) {
	r := newRunner(t, nil)
	t.Cleanup(func() { r.Close() })
	runBuilderWith(t, r, newSpec(t, "mkdir $out"))
	pid, _ := warmChild(t, r)
	before := sandbox.WarmBuilds(r)

	spec := newSpec(t, "mkdir $out; echo ok > $out/r")
	_, res := runBuilderWith(t, r, spec)
	if got := readOutput(t, spec, "r"); got != "ok\n" {
		t.Errorf("r = %q, want %q", got, "ok\n")
	}
	if got := sandbox.WarmBuilds(r); got != before+1 {
		t.Errorf("WarmBuilds() = %d after a build, want %d", got, before+1)
	}
	if next, _ := warmChild(t, r); next == pid {
		t.Errorf("warm child %d still there after its build", pid)
	}

	pid, uid := warmChild(t, r)
	if uid == res.UID && uid != syscall.Getuid() {
		t.Errorf("warm child has uid %d, like the build still running as it", uid)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close() = %v, want nil", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("kill(warm child %d, 0) = %v after Close, want ESRCH", pid, err)
	}
	if uid != syscall.Getuid() {
		if pids := processesOf(t, uid); len(pids) > 0 {
			t.Errorf("processes of the warm child's uid %d after Close: %v", uid, pids)
		}
	}
	if pid, _ := sandbox.WarmChild(r); pid != 0 {
		t.Errorf("warm child %d after Close", pid)
	}
}

// TestRunner_Run_WarmChildDied kills the warm child: the build that would
// have used it starts cold and succeeds, whether it finds the child dead
// already or finds out only when it hands it its configuration.
func TestRunner_Run_WarmChildDied(t *testing.T) {
	for _, tc := range []struct {
		name string
		wait bool // until the spawner reaped it
	}{{"Reaped", true}, {"Dying", false}} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRunner(t, nil)
			t.Cleanup(func() { r.Close() })
			runBuilderWith(t, r, newSpec(t, "mkdir $out"))
			pid, _ := warmChild(t, r)
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			if tc.wait {
				for deadline := time.Now().Add(30 * time.Second); syscall.Kill(pid, 0) == nil; time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("killed warm child %d not reaped", pid)
					}
				}
			}
			before := sandbox.WarmBuilds(r)
			spec := newSpec(t, "mkdir $out; echo ok > $out/r")
			runBuilderWith(t, r, spec)
			if got := readOutput(t, spec, "r"); got != "ok\n" {
				t.Errorf("r = %q, want %q", got, "ok\n")
			}
			if got := sandbox.WarmBuilds(r); got != before {
				t.Errorf("WarmBuilds() = %d, want still %d: the build ran in a killed child", got, before)
			}
			// The next warm child serves again.
			warmChild(t, r)
			runBuilderWith(t, r, newSpec(t, "mkdir $out"))
			if got := sandbox.WarmBuilds(r); got != before+1 {
				t.Errorf("WarmBuilds() = %d, want %d", got, before+1)
			}
		})
	}
}

// TestRunner_Run_WarmChildExpires checks that a warm child that no build
// takes goes after a while, leaving nothing behind.
func TestRunner_Run_WarmChildExpires(t *testing.T) {
	r := newRunner(t, nil)
	t.Cleanup(func() { r.Close() })
	runBuilderWith(t, r, newSpec(t, "mkdir $out"))
	pid, uid := warmChild(t, r)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if p, _ := sandbox.WarmChild(r); p == 0 && syscall.Kill(pid, 0) != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("warm child %d still there", pid)
		}
	}
	if uid != syscall.Getuid() {
		if pids := processesOf(t, uid); len(pids) > 0 {
			t.Errorf("processes of the expired warm child's uid %d: %v", uid, pids)
		}
	}
	runBuilderWith(t, r, newSpec(t, "mkdir $out")) // cold again
}
