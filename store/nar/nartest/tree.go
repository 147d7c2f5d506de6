package nartest

import "strings"

// Magic is the string every archive starts with.
const Magic = "nix-archive-1"

// Node is a node of an archive in a tree notation: File, Executable,
// Symlink and Dir.
type Node interface {
	write(w *Writer)
}

// Entry is a directory entry.
type Entry struct {
	Name string
	Node Node
}

type file struct {
	contents   string
	executable bool
}

func (f file) write(w *Writer) {
	w.Tokens("(", "type", "regular")
	if f.executable {
		w.Tokens("executable", "")
	}
	w.Tokens("contents", f.contents, ")")
}

type symlink struct{ target string }

func (s symlink) write(w *Writer) { w.Tokens("(", "type", "symlink", "target", s.target, ")") }

type dir struct{ entries []Entry }

func (d dir) write(w *Writer) {
	w.Tokens("(", "type", "directory")
	for _, e := range d.entries {
		w.Tokens("entry", "(", "name", e.Name, "node")
		w.Node(e.Node)
		w.Token(")")
	}
	w.Token(")")
}

// File is a regular file that is not executable.
func File(contents string) Node { return file{contents: contents} }

// Executable is an executable regular file.
func Executable(contents string) Node { return file{contents: contents, executable: true} }

// Symlink is a symlink to target.
func Symlink(target string) Node { return symlink{target: target} }

// Dir is a directory with entries in the order given: they are not sorted,
// so that unsorted and duplicate entries can be written.
func Dir(entries ...Entry) Node { return dir{entries: entries} }

// E is shorthand for an Entry.
func E(name string, n Node) Entry { return Entry{Name: name, Node: n} }

// Path returns a directory that holds leaf at the slash-separated path,
// through a directory for each component before the last.
func Path(path string, leaf Node) Node {
	names := strings.Split(path, "/")
	n := leaf
	for i := len(names) - 1; i > 0; i-- {
		n = Dir(E(names[i], n))
	}
	return Dir(E(names[0], n))
}

// NAR returns the archive of root: the magic followed by its tokens.
func NAR(root Node) []byte {
	var w Writer
	return w.Token(Magic).Node(root).Bytes()
}

// Nested returns depth directories nested in each other, the outermost
// being the root, with a file in the innermost.
func Nested(depth int) []byte {
	var w Writer
	w.Token(Magic)
	for i := 0; i < depth; i++ {
		if i > 0 {
			w.Tokens("entry", "(", "name", "d", "node")
		}
		w.Tokens("(", "type", "directory")
	}
	w.Tokens("entry", "(", "name", "f", "node")
	w.Node(File("deep"))
	w.Token(")")
	for i := 0; i < depth; i++ {
		w.Token(")")
		if i < depth-1 {
			w.Token(")")
		}
	}
	return w.Bytes()
}
