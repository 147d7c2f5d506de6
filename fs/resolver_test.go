package fs_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/storefs/storefs/fs"
	"github.com/storefs/storefs/realise"
	"github.com/storefs/storefs/sandbox"
	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/storetest"
)

func TestMain(m *testing.M) {
	sandbox.RunChildIfRequested()
	os.Exit(m.Run())
}

// newResolver is a resolver over a real store (with busybox and the
// fixture derivations) and a real worker, without a mount.
func newResolver(t *testing.T, failTTL time.Duration) (*fs.Resolver, *store.Store) {
	t.Helper()
	st := storetest.NewStore(t, nil)
	os.Chmod(st.StateDir(), 0o755)
	storetest.AddBusybox(t, st)
	storetest.AddFixtureDerivations(t, st)
	runner, err := sandbox.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { runner.Close() })
	w, err := realise.New(st, runner, &realise.Options{Sandbox: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	hold := func(p store.Path) func() { return st.TempRoots.Add(p) }
	return fs.NewResolver(st.Dir, st, w, failTTL, hold), st
}

func TestResolver_Resolve(t *testing.T) {
	r, st := newResolver(t, time.Minute)
	ctx := context.Background()
	t.Run("Valid", func(t *testing.T) {
		// busybox is valid: served as it is.
		if err := r.Resolve(ctx, filepath.Base(storetest.BusyboxPath)); err != nil {
			t.Errorf("Resolve(busybox) = %v", err)
		}
	})
	t.Run("NotAStorePath", func(t *testing.T) {
		for _, name := range []string{"x", ".links", "71fc7s32zl20dc955bhghy5dvalm7ndz", "../etc"} {
			if err := r.Resolve(ctx, name); !errors.Is(err, fs.ErrNotStorePath) {
				t.Errorf("Resolve(%q) = %v, want ErrNotStorePath", name, err)
			}
		}
	})
	t.Run("Unknown", func(t *testing.T) {
		if err := r.Resolve(ctx, "00000000000000000000000000000000-nothing"); !errors.Is(err, fs.ErrUnknown) {
			t.Errorf("Resolve(unknown) = %v, want ErrUnknown", err)
		}
	})
	t.Run("Builds", func(t *testing.T) {
		// The fixture's trivial output: known through the output index.
		if err := r.Resolve(ctx, "8z3rv77c71xvmyyijyry9760g7fbghah-trivial"); err != nil {
			t.Fatalf("Resolve(trivial) = %v", err)
		}
		if ok, _ := st.IsValid("/nix/store/8z3rv77c71xvmyyijyry9760g7fbghah-trivial"); !ok {
			t.Errorf("trivial is not valid after Resolve")
		}
	})
	t.Run("FailureRemembered", func(t *testing.T) {
		name := "a2jimbkfajik4k7mwc59wbdyawvvgsi1-fail-exit1"
		err := r.Resolve(ctx, name)
		var re *fs.RealiseError
		if !errors.As(err, &re) {
			t.Fatalf("Resolve(fail-exit1) = %v, want a RealiseError", err)
		}
		// The second lookup answers from memory: the same error value.
		if err2 := r.Resolve(ctx, name); err2 != err {
			t.Errorf("second Resolve = %v, want the remembered %v", err2, err)
		}
		r.Forget(re.Path)
		if err3 := r.Resolve(ctx, name); err3 == err {
			t.Errorf("Resolve after Forget answered from memory")
		}
	})
	t.Run("Interrupted", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := r.Resolve(ctx, "k35x0wsa2pfa2v6ci8nn32cs5065pgg7-tree"); !errors.Is(err, context.Canceled) {
			t.Errorf("Resolve with a cancelled context = %v, want context.Canceled", err)
		}
	})
}
