package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRemoveTree_MountPoint checks that removeTree does not remove
// through a mount below the tree: it fails, and the mounted files stay.
// The mount is made in a mount namespace of the test's own thread.
func TestRemoveTree_MountPoint(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: a mount namespace of one thread (unshare refuses a user namespace to a threaded process)")
	}
	for _, tc := range []struct {
		name  string
		mount string // below the tree
		dir   bool
	}{
		{"Directory", "a/b", true},
		{"File", "a/f", false},
		{"Top", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tree := filepath.Join(t.TempDir(), "tree")
			if err := os.MkdirAll(filepath.Join(tree, "a", "b"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(tree, "a", "f"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			victim := t.TempDir()
			source := filepath.Join(victim, "precious")
			if err := os.WriteFile(source, []byte("keep me"), 0o644); err != nil {
				t.Fatal(err)
			}
			if tc.dir {
				source = victim
			}
			errc := make(chan error, 1)
			go func() {
				// No UnlockOSThread: the thread, in its own mount
				// namespace, ends with the goroutine.
				runtime.LockOSThread()
				if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
					errc <- err
					return
				}
				if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
					errc <- err
					return
				}
				if err := unix.Mount(source, filepath.Join(tree, tc.mount), "", unix.MS_BIND, ""); err != nil {
					errc <- err
					return
				}
				errc <- removeTree(tree)
			}()
			// rmdir and unlink of a mount point fail with EBUSY; a
			// directory is refused earlier, on the way in.
			err := <-errc
			if ok := err != nil && (errors.Is(err, unix.EBUSY) || strings.Contains(err.Error(), "is a mount point")); !ok {
				t.Errorf("removeTree(%s) = %v, want an error saying that something is mounted at %q", tree, err, tc.mount)
			}
			if data, err := os.ReadFile(filepath.Join(victim, "precious")); err != nil || string(data) != "keep me" {
				t.Errorf("the mounted file holds %q, %v; want %q", data, err, "keep me")
			}
		})
	}
}

// TestRemoveTree_Unwritable checks that removeTree removes directories
// that their owner made unreadable and unwritable.
func TestRemoveTree_Unwritable(t *testing.T) {
	tree := filepath.Join(t.TempDir(), "tree")
	for _, d := range []string{"a/b/c", "a/d"} {
		if err := os.MkdirAll(filepath.Join(tree, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"a/b/c/f", "a/b/g", "a/h"} {
		if err := os.WriteFile(filepath.Join(tree, f), nil, 0o444); err != nil {
			t.Fatal(err)
		}
	}
	for d, mode := range map[string]os.FileMode{"a/b/c": 0o555, "a/b": 0, "a/d": 0o500, "a": 0o555} {
		if err := os.Chmod(filepath.Join(tree, d), mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := removeTree(tree); err != nil {
		t.Fatalf("removeTree(%s) = %v, want nil", tree, err)
	}
	if _, err := os.Lstat(tree); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Lstat(%s) = %v, want ErrNotExist", tree, err)
	}
}

// TestCheckNotMounted checks the mount table lookup of removeTreeSlow,
// which kernels without openat2 use.
func TestCheckNotMounted(t *testing.T) {
	if err := checkNotMounted("/proc"); err == nil {
		t.Errorf("checkNotMounted(/proc) = nil, want an error")
	}
	if err := checkNotMounted(t.TempDir()); err != nil {
		t.Errorf("checkNotMounted(a new directory) = %v, want nil", err)
	}
}
