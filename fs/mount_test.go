package fs_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/storefs/storefs/fs"
	"github.com/storefs/storefs/store"
)

// mountStore mounts r's store on a fresh directory with opts, wires the
// store's validity hooks to the mount as `storefs mount` does, and
// unmounts at the end of the test.
func mountStore(t *testing.T, r *fs.Resolver, st *store.Store, opts *fs.Options) (string, *fs.Server) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	srv, err := fs.Mount(dir, st.RealDir(), st, r, opts)
	if err != nil {
		t.Fatalf("Mount(%s) = %v", dir, err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("Unmount() = %v", err)
		}
	})
	st.OnValid(func(ps []store.Path) {
		for _, p := range ps {
			srv.PathValid(p)
		}
	})
	st.OnInvalid(func(ps []store.Path) {
		for _, p := range ps {
			srv.PathInvalid(p)
		}
	})
	return dir, srv
}

// stat runs stat(1) in a child process: this process serves the mount,
// so it must not be the one waiting on it.
func stat(t *testing.T, p string) (string, error) {
	t.Helper()
	out, err := exec.Command("stat", "-c", "%F", p).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// TestMount_Invalidation: with entries kept for an hour, a path that
// became valid after a lookup found nothing appears, and a deleted one
// disappears, as soon as Flush returns: the mount tells the kernel to
// forget (NotifyEntry), rather than waiting for its caches to expire.
func TestMount_Invalidation(t *testing.T) {
	r, st := newResolver(t, time.Minute)
	dir, srv := mountStore(t, r, st, &fs.Options{NegativeTimeout: time.Hour, EntryTimeout: time.Hour})
	flush := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Flush(ctx); err != nil {
			t.Fatalf("Flush() = %v", err)
		}
	}

	p, err := st.Dir.MakeTextPath("late", store.HashBytes(store.SHA256, []byte("late\n")), nil)
	if err != nil {
		t.Fatal(err)
	}
	mounted := filepath.Join(dir, p.Base())
	if out, err := stat(t, mounted); err == nil {
		t.Fatalf("stat of %s before it was added: %s", p, out)
	}
	if _, err := st.AddText(context.Background(), "late", []byte("late\n"), nil); err != nil {
		t.Fatal(err)
	}
	flush()
	if out, err := stat(t, mounted); err != nil || out != "regular file" {
		t.Fatalf("stat of %s right after it was added = %q, %v; want a regular file", p, out, err)
	}
	if err := st.Delete([]store.Path{p}); err != nil {
		t.Fatal(err)
	}
	flush()
	if out, err := stat(t, mounted); err == nil {
		t.Errorf("stat of %s right after it was deleted = %q, want ENOENT", p, out)
	}
}

// TestMount_RefusesMountedDir: mounting over an existing storefs (FUSE)
// mount is refused without Force.
func TestMount_RefusesMountedDir(t *testing.T) {
	r, st := newResolver(t, time.Minute)
	dir, _ := mountStore(t, r, st, nil)
	srv, err := fs.Mount(dir, st.RealDir(), st, r, nil)
	if err == nil {
		srv.Unmount()
		t.Fatalf("a second Mount over %s succeeded, want a refusal", dir)
	}
	if !strings.Contains(err.Error(), dir) {
		t.Errorf("Mount error %q does not name %s", err, dir)
	}
}

// TestMount_Options: the mount is read-only, noatime, nosuid and nodev,
// with allow_other and default_permissions.
func TestMount_Options(t *testing.T) {
	r, st := newResolver(t, time.Minute)
	dir, _ := mountStore(t, r, st, nil)
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[4] != dir {
			continue
		}
		opts := "," + f[5] + ","
		for _, want := range []string{",ro,", ",noatime,", ",nosuid,", ",nodev,"} {
			if !strings.Contains(opts, want) {
				t.Errorf("mount options %s lack %s", f[5], strings.Trim(want, ","))
			}
		}
		if !strings.Contains(line, "default_permissions") || !strings.Contains(line, "allow_other") {
			t.Errorf("mount %q lacks default_permissions or allow_other", line)
		}
		return
	}
	t.Fatalf("%s is not in the mount table", dir)
}
