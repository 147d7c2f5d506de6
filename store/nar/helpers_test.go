package nar_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/storefs/storefs/store/nar"
	"github.com/storefs/storefs/store/nar/nartest"
)

// fsNode is a node of a tree to create on disk: kind is "dir", "file",
// "exec" or "symlink"; data is a file's contents or a symlink's target.
type fsNode struct {
	path string
	kind string
	data string
}

// variedTree is a tree with every node type and the cases that trip up an
// archiver: names that sort differently by bytes than by locale, empty
// files and directories, dangling and absolute symlinks, and a file larger
// than Dump's buffer.
func variedTree() []fsNode {
	return []fsNode{
		{"B", "file", "upper case sorts first\n"},
		{"a", "dir", ""},
		{"a/b", "dir", ""},
		{"a/b/c", "file", "deep\n"},
		{"a/b/run", "exec", "#!/bin/sh\nexit 0\n"},
		{"a-b", "exec", "12345678"},
		{"a.b", "file", ""},
		{"abs", "symlink", "/etc/passwd"},
		{"big", "file", strings.Repeat("0123456789abcde\n", 40000)},
		{"dangling", "symlink", "does/not/exist"},
		{"empty", "dir", ""},
		{"rel", "symlink", "a/b/c"},
		{"z", "dir", ""},
		{"z/up", "symlink", ".."},
	}
}

// writeTree creates nodes under a new directory root in t.TempDir() and
// returns root.
func writeTree(t testing.TB, nodes []fsNode) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		p := filepath.Join(root, n.path)
		var err error
		switch n.kind {
		case "dir":
			err = os.Mkdir(p, 0o755)
		case "file":
			err = os.WriteFile(p, []byte(n.data), 0o644)
		case "exec":
			err = os.WriteFile(p, []byte(n.data), 0o755)
		case "symlink":
			err = os.Symlink(n.data, p)
		default:
			t.Fatalf("writeTree: unknown kind %q of %s", n.kind, n.path)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// dump returns the NAR of path.
func dump(t testing.TB, path string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := nar.Dump(&buf, path); err != nil {
		t.Fatalf("Dump(%s) = %v, want nil", path, err)
	}
	return buf.Bytes()
}

// restore unpacks data into a new target in t.TempDir() and returns it.
func restore(t testing.TB, data []byte) string {
	t.Helper()
	target := filepath.Join(t.TempDir(), "out")
	if err := nar.Restore(bytes.NewReader(data), target); err != nil {
		t.Fatalf("Restore = %v, want nil", err)
	}
	return target
}

// entry is a header with the contents of a regular file.
type entry struct {
	nar.Header
	Contents string
}

// readAll reads every node of an archive with a Reader. It returns the
// nodes read and the error that ended the reading, nil for io.EOF.
func readAll(r io.Reader) ([]entry, error) {
	nr := nar.NewReader(r)
	var ents []entry
	for {
		h, err := nr.Next()
		if err == io.EOF {
			return ents, nil
		}
		if err != nil {
			return ents, err
		}
		b, err := io.ReadAll(nr)
		if err != nil {
			return ents, err
		}
		if int64(len(b)) != h.Size {
			return ents, errors.New("contents shorter than the header's size")
		}
		ents = append(ents, entry{Header: *h, Contents: string(b)})
	}
}

// encode writes the archive of nodes as the Reader returned them, with a
// Writer that knows nothing of the Reader: reading and encoding again must
// give back the input.
func encode(ents []entry) []byte {
	var w nartest.Writer
	w.Token(nartest.Magic)
	var dirs []string // open directories, innermost last
	closeDir := func() {
		w.Token(")") // the directory node
		if len(dirs) > 1 {
			w.Token(")") // its entry
		}
		dirs = dirs[:len(dirs)-1]
	}
	for _, e := range ents {
		if e.Path != "" {
			parent, name := "", e.Path
			if i := strings.LastIndexByte(e.Path, '/'); i >= 0 {
				parent, name = e.Path[:i], e.Path[i+1:]
			}
			for len(dirs) > 0 && dirs[len(dirs)-1] != parent {
				closeDir()
			}
			w.Tokens("entry", "(", "name", name, "node")
		}
		switch e.Type {
		case nar.TypeRegular:
			w.Tokens("(", "type", "regular")
			if e.Executable {
				w.Tokens("executable", "")
			}
			w.Tokens("contents", e.Contents, ")")
		case nar.TypeSymlink:
			w.Tokens("(", "type", "symlink", "target", e.LinkTarget, ")")
		case nar.TypeDirectory:
			w.Tokens("(", "type", "directory")
			dirs = append(dirs, e.Path)
			continue
		}
		if e.Path != "" {
			w.Token(")") // the entry of a file or symlink
		}
	}
	for len(dirs) > 0 {
		closeDir()
	}
	return w.Bytes()
}

// listDir returns the sorted names in dir.
func listDir(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

// firstDiff describes where two archives first differ, for failure messages.
func firstDiff(got, want []byte) string {
	n := min(len(got), len(want))
	for i := 0; i < n; i++ {
		if got[i] != want[i] {
			lo := max(0, i-16)
			return fmt.Sprintf("first difference at byte %d: got %q, want %q", i, got[lo:min(len(got), i+16)], want[lo:min(len(want), i+16)])
		}
	}
	return fmt.Sprintf("got %d bytes, want %d, equal up to the shorter", len(got), len(want))
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
