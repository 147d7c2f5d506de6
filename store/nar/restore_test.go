package nar_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"

	"github.com/storefs/storefs/store/nar"
	"github.com/storefs/storefs/store/nar/nartest"
)

func TestRestore_Valid(t *testing.T) {
	for _, tc := range nartest.Valid() {
		t.Run(tc.Name, func(t *testing.T) {
			out := restore(t, tc.Data)
			if got := dump(t, out); !bytes.Equal(got, tc.Data) {
				t.Errorf("Dump(Restore(%s)): %s", tc.Why, firstDiff(got, tc.Data))
			}
		})
	}
}

func TestRestore_Modes(t *testing.T) {
	// Modes do not depend on the umask. The umask is the process's, so
	// this test must not run in parallel with others that create files.
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	out := restore(t, nartest.NAR(nartest.Dir(
		nartest.E("d", nartest.Dir()),
		nartest.E("f", nartest.File("x")),
		nartest.E("x", nartest.Executable("x")),
	)))
	want := map[string]os.FileMode{
		"":  os.ModeDir | 0o755,
		"d": os.ModeDir | 0o755,
		"f": 0o644,
		"x": 0o755,
	}
	for name, mode := range want {
		fi, err := os.Lstat(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != mode {
			t.Errorf("mode of %q = %v, want %v", name, fi.Mode(), mode)
		}
	}
}

func TestRestore_Malicious(t *testing.T) {
	escapeAbsExisted := exists(t, nartest.EscapeAbs)
	for _, tc := range nartest.Malicious() {
		t.Run(tc.Name, func(t *testing.T) {
			parent, target := newTarget(t)
			err := nar.Restore(bytes.NewReader(tc.Data), target)
			var fe *nar.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("Restore(%s) = %v, want a *nar.FormatError", tc.Why, err)
			}
			if !strings.Contains(err.Error(), target) {
				t.Errorf("Restore(%s) = %v, want an error naming the target %s", tc.Why, err, target)
			}
			checkNoTarget(t, parent, target)
			if !escapeAbsExisted && exists(t, nartest.EscapeAbs) {
				os.RemoveAll(nartest.EscapeAbs)
				t.Errorf("Restore(%s) created %s", tc.Why, nartest.EscapeAbs)
			}
		})
	}
}

func TestRestore_TargetExists(t *testing.T) {
	// An existing target is neither used nor removed.
	data := nartest.NAR(nartest.Dir(nartest.E("a", nartest.File("new"))))
	for _, kind := range []string{"dir", "file", "symlink"} {
		t.Run(kind, func(t *testing.T) {
			parent := t.TempDir()
			target := filepath.Join(parent, "out")
			var err error
			switch kind {
			case "dir":
				if err = os.Mkdir(target, 0o755); err == nil {
					err = os.WriteFile(filepath.Join(target, "keep"), nil, 0o644)
				}
			case "file":
				err = os.WriteFile(target, []byte("keep"), 0o644)
			case "symlink":
				err = os.Symlink(t.TempDir(), target)
			}
			if err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, parent)
			if err := nar.Restore(bytes.NewReader(data), target); !errors.Is(err, os.ErrExist) {
				t.Errorf("Restore to an existing %s = %v, want an error wrapping os.ErrExist", kind, err)
			}
			if after := snapshot(t, parent); after != before {
				t.Errorf("Restore to an existing %s changed %s:\n%s\nwant:\n%s", kind, parent, after, before)
			}
		})
	}
}

func TestRestore_NoParent(t *testing.T) {
	target := filepath.Join(t.TempDir(), "missing", "out")
	if err := nar.Restore(bytes.NewReader(nartest.NAR(nartest.File(""))), target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Restore(%s) = %v, want an error wrapping os.ErrNotExist", target, err)
	}
}

func TestRestore_SourceError(t *testing.T) {
	// A failing download leaves nothing behind, wherever it fails.
	data := nartest.NAR(nartest.Sample())
	errBroken := errors.New("connection reset")
	for _, cut := range []int{0, 100, 600, len(data) - 1, len(data)} {
		parent, target := newTarget(t)
		src := io.MultiReader(bytes.NewReader(data[:cut]), iotest.ErrReader(errBroken))
		if err := nar.Restore(src, target); !errors.Is(err, errBroken) {
			t.Errorf("Restore from a source failing after %d bytes = %v, want %v", cut, err, errBroken)
		}
		checkNoTarget(t, parent, target)
	}
}

// newTarget returns a new directory holding a sentinel directory, and a
// target in it that does not exist yet.
func newTarget(t testing.TB) (parent, target string) {
	t.Helper()
	parent = t.TempDir()
	sentinel := filepath.Join(parent, "sentinel")
	if err := os.Mkdir(sentinel, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sentinel, "keep"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	return parent, filepath.Join(parent, "out")
}

// checkNoTarget checks that a failed Restore left target absent and
// nothing else beside it but what newTarget made.
func checkNoTarget(t testing.TB, parent, target string) {
	t.Helper()
	if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after a failed Restore, Lstat(%s) = %v, want not exist", target, err)
	}
	if got := listDir(t, parent); !slices.Equal(got, []string{"sentinel"}) {
		t.Errorf("after a failed Restore, %s holds %q, want only sentinel", parent, got)
	}
	if got := listDir(t, filepath.Join(parent, "sentinel")); !slices.Equal(got, []string{"keep"}) {
		t.Errorf("after a failed Restore, the sentinel holds %q, want only keep", got)
	}
}

// snapshot describes the tree at dir in a string, for comparisons.
func snapshot(t testing.TB, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		b.WriteString(p + " " + fi.Mode().String() + " " + itoa(fi.Size()) + "\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func exists(t testing.TB, path string) bool {
	t.Helper()
	_, err := os.Lstat(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}
