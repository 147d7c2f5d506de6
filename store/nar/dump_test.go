package nar_test

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/storefs/storefs/store/nar"
	"github.com/storefs/storefs/store/nar/nartest"
)

func TestDump_Tree(t *testing.T) {
	// The expected archive is written with nartest's tree notation, which
	// shares no code with Dump.
	root := writeTree(t, []fsNode{
		{"b", "dir", ""},
		{"b/x", "exec", "#!/bin/sh\n"},
		{"B", "file", "12345678"},
		{"a.b", "file", ""},
		{"a-b", "symlink", "/nix/store"},
		{"a", "dir", ""},
	})
	want := nartest.NAR(nartest.Dir(
		nartest.E("B", nartest.File("12345678")),
		nartest.E("a", nartest.Dir()),
		nartest.E("a-b", nartest.Symlink("/nix/store")),
		nartest.E("a.b", nartest.File("")),
		nartest.E("b", nartest.Dir(nartest.E("x", nartest.Executable("#!/bin/sh\n")))),
	))
	if got := dump(t, root); !bytes.Equal(got, want) {
		t.Errorf("Dump(%s): %s", root, firstDiff(got, want))
	}
}

func TestDump_Root(t *testing.T) {
	dir := t.TempDir()
	file := func(contents string) func(string) error {
		return func(p string) error { return os.WriteFile(p, []byte(contents), 0o600) }
	}
	tests := []struct {
		name   string
		create func(path string) error
		mode   os.FileMode // set after creation, which the umask affects; 0 for none
		want   nartest.Node
	}{
		// A regular file at the root.
		{"File", file("hello\n"), 0o644, nartest.File("hello\n")},
		// Only the owner's execute bit counts.
		{"OwnerExecutable", file("x"), 0o744, nartest.Executable("x")},
		{"GroupExecutable", file("x"), 0o654, nartest.File("x")},
		{"OwnerExecuteOnly", file("x"), 0o100, nartest.Executable("x")},
		// A symlink at the root is dumped, not followed.
		{"Symlink", func(p string) error { return os.Symlink("/etc", p) }, 0, nartest.Symlink("/etc")},
		{"EmptyDir", func(p string) error { return os.Mkdir(p, 0o700) }, 0, nartest.Dir()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			if err := tc.create(p); err != nil {
				t.Fatal(err)
			}
			if tc.mode != 0 {
				if err := os.Chmod(p, tc.mode); err != nil {
					t.Fatal(err)
				}
			}
			if got, want := dump(t, p), nartest.NAR(tc.want); !bytes.Equal(got, want) {
				t.Errorf("Dump(%s): %s", p, firstDiff(got, want))
			}
		})
	}
}

func TestDump_RoundTrip(t *testing.T) {
	root := writeTree(t, variedTree())
	first := dump(t, root)
	out := restore(t, first)
	if second := dump(t, out); !bytes.Equal(second, first) {
		t.Errorf("Dump(Restore(Dump(%s))): %s", root, firstDiff(second, first))
	}

	ents, err := readAll(bytes.NewReader(first))
	if err != nil {
		t.Fatalf("reading Dump(%s) = %v, want nil", root, err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, describe(e))
	}
	want := []string{
		" directory",
		"B regular 23",
		"a directory",
		"a/b directory",
		"a/b/c regular 5",
		"a/b/run regular executable 17",
		"a-b regular executable 8",
		"a.b regular 0",
		"abs symlink /etc/passwd",
		"big regular 640000",
		"dangling symlink does/not/exist",
		"empty directory",
		"rel symlink a/b/c",
		"z directory",
		"z/up symlink ..",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("headers of Dump(%s):\n%s\nwant:\n%s", root, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// describe prints a header in one line for comparisons.
func describe(e entry) string {
	s := e.Path + " " + e.Type.String()
	switch e.Type {
	case nar.TypeRegular:
		if e.Executable {
			s += " executable"
		}
		s += " " + itoa(e.Size)
	case nar.TypeSymlink:
		s += " " + e.LinkTarget
	}
	return s
}

func TestDump_NixCompatible(t *testing.T) {
	nixStore, err := exec.LookPath("nix-store")
	if err != nil {
		t.Skip("nix-store is not on PATH (install Debian's nix-bin to compare with real Nix)")
	}
	root := writeTree(t, variedTree())
	paths := []string{root, filepath.Join(root, "big"), filepath.Join(root, "a-b"), filepath.Join(root, "abs"), filepath.Join(root, "empty")}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			cmd := exec.Command(nixStore, "--dump", p)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			want, err := cmd.Output()
			if err != nil {
				t.Fatalf("nix-store --dump %s: %v\n%s", p, err, stderr.Bytes())
			}
			if got := dump(t, p); !bytes.Equal(got, want) {
				t.Errorf("Dump(%s) differs from nix-store --dump: %s", p, firstDiff(got, want))
			}
		})
	}
}

func TestDump_Unsupported(t *testing.T) {
	tests := []struct {
		name   string
		create func(path string) error
	}{
		{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o644) }},
		{"socket", func(p string) error {
			l, err := net.Listen("unix", p)
			if err != nil {
				return err
			}
			l.(*net.UnixListener).SetUnlinkOnClose(false)
			return l.Close()
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// In a directory: the error names the file and its type.
			root := writeTree(t, []fsNode{{"a", "file", "x"}})
			p := filepath.Join(root, "b", tc.name)
			if err := os.Mkdir(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := tc.create(p); err != nil {
				t.Fatal(err)
			}
			for _, path := range []string{root, p} {
				var buf bytes.Buffer
				err := nar.Dump(&buf, path)
				if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), tc.name) {
					t.Errorf("Dump(%s) = %v, want an error naming %s and %q", path, err, p, tc.name)
				}
			}
		})
	}
}

func TestDump_TooDeep(t *testing.T) {
	// Dump refuses what the Reader would: directories beyond MaxDepth.
	// (TestRestore_Valid/deep dumps a tree exactly MaxDepth deep.)
	root := restore(t, nartest.Nested(nar.MaxDepth))
	deepest := root + strings.Repeat("/d", nar.MaxDepth-1) + "/deeper"
	if err := os.Mkdir(deepest, 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := nar.Dump(&buf, root); err == nil || !strings.Contains(err.Error(), "nested deeper than") {
		t.Errorf("Dump of %d nested directories = %v, want an error about nesting", nar.MaxDepth+1, err)
	}
}

func TestDump_TooLong(t *testing.T) {
	// Dump refuses what the Reader would: paths longer than MaxPathLen.
	// The tree is made with os.Root, which walks the path name by name, as
	// the whole path is longer than the kernel resolves at once.
	dir := strings.Repeat("d", nar.MaxNameLen)
	long := strings.Repeat(dir+"/", nar.MaxPathLen/(nar.MaxNameLen+1)) + "x"
	root := restore(t, nartest.NAR(nartest.Path(long, nartest.Dir())))
	r, err := os.OpenRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	longest := long + "/" + strings.Repeat("y", nar.MaxPathLen-len(long)-1)
	if err := r.WriteFile(longest, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	data := dump(t, root)
	if got := dump(t, restore(t, data)); !bytes.Equal(got, data) {
		t.Errorf("round trip of a path of %d bytes: %s", len(longest), firstDiff(got, data))
	}
	if err := r.WriteFile(longest+"z", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := nar.Dump(&buf, root); err == nil || !strings.Contains(err.Error(), "longer than 4095 bytes") {
		t.Errorf("Dump of a path of %d bytes = %v, want an error about its length", len(longest)+1, err)
	}
}

func TestDump_WriterError(t *testing.T) {
	root := writeTree(t, variedTree())
	errFull := errors.New("disk full")
	for _, limit := range []int{0, 100, 300 << 10} {
		w := &failingWriter{limit: limit, err: errFull}
		if err := nar.Dump(w, root); !errors.Is(err, errFull) {
			t.Errorf("Dump to a writer failing after %d bytes = %v, want %v", limit, err, errFull)
		}
	}
}

// failingWriter accepts limit bytes, then fails with err.
type failingWriter struct {
	limit int
	err   error
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.limit {
		n := w.limit
		w.limit = 0
		return n, w.err
	}
	w.limit -= len(p)
	return len(p), nil
}
