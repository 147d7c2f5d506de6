package nartest

import (
	"fmt"
	"strings"

	"github.com/storefs/storefs/store/nar"
)

// Escape targets of the malicious cases; see the package documentation.
const (
	// EscapeName is the name beside the restore target that cases try to
	// create through "..", slashes and relative symlinks.
	EscapeName = "nartest-escape"

	// EscapeAbs is the absolute path that cases try to create through
	// absolute symlinks.
	EscapeAbs = "/tmp/nartest-escape"
)

// Case is a named archive.
type Case struct {
	// Name is short, unique in its table, and usable as a subtest name.
	Name string

	// Why says in a line what the archive is or tries.
	Why string

	// Data is the archive.
	Data []byte

	// Trailing reports that Data is a valid archive followed by more
	// bytes: a Reader reads it to io.EOF without complaint, as it never
	// looks past the end, and Restore rejects it.
	Trailing bool
}

// Sample is a small valid tree with every node type: nested and empty
// directories, an empty file, an executable, contents whose length is and
// is not a multiple of 8, and symlinks (relative, absolute, dangling).
func Sample() Node {
	return Dir(
		E("bin", Dir(
			E("hello", Executable("#!/bin/sh\necho hello\n")),
			E("hi", Symlink("hello")),
		)),
		E("eight", File("12345678")),
		E("empty", Dir()),
		E("empty-file", File("")),
		E("lib", Dir(
			E("abs", Symlink("/nix/store/00000000000000000000000000000000-x/lib")),
			E("dangling", Symlink("../nowhere")),
			E("data", File("some data\x00with a NUL")),
		)),
	)
}

// Valid returns well-formed archives covering the grammar and the limits;
// restoring and dumping each gives back the same bytes.
func Valid() []Case {
	return []Case{
		{Name: "file", Why: "a regular file at the root", Data: NAR(File("hello\n"))},
		{Name: "empty-file", Why: "an empty file at the root", Data: NAR(File(""))},
		{Name: "executable", Why: "an executable at the root", Data: NAR(Executable("#!/bin/sh\n"))},
		{Name: "symlink", Why: "a symlink at the root", Data: NAR(Symlink("/nix/store/foo"))},
		{Name: "empty-dir", Why: "an empty directory at the root", Data: NAR(Dir())},
		{Name: "sample", Why: "a small tree with every node type", Data: NAR(Sample())},
		{Name: "byte-order", Why: "names sorted by bytes: upper case, '-' and '.' before lower case", Data: NAR(Dir(
			E("B", File("")), E("a", File("")), E("a-b", File("")), E("a.b", File("")), E("a0", File("")), E("b", File("")),
		))},
		{Name: "odd-names", Why: "names with spaces, newlines, high bytes and the longest length", Data: NAR(Dir(
			E("\x01", File("")), E("a b\nc", File("")), E(strings.Repeat("n", nar.MaxNameLen), File("")), E("\xff\xfe", File("")),
		))},
		{Name: "long-target", Why: "the longest symlink target", Data: NAR(Symlink(strings.Repeat("t", nar.MaxTargetLen)))},
		{Name: "deep", Why: "directories nested as deep as allowed", Data: Nested(nar.MaxDepth)},
		{Name: "long-path", Why: "a path as long as allowed", Data: NAR(Path(longPath(nar.MaxPathLen), File("")))},
	}
}

// Malicious returns archives that are malformed or try to write outside
// the restore target; the Reader rejects each, and Restore leaves nothing
// behind.
func Malicious() []Case {
	pwn := File("pwned\n")
	cases := []Case{
		// Escapes through names.
		{Name: "dotdot-file", Why: `an entry named ".."`, Data: NAR(Dir(E("..", pwn)))},
		{Name: "dotdot-dir", Why: `a directory ".." holding a file, to create it beside the target`, Data: NAR(Dir(E("..", Dir(E(EscapeName, pwn)))))},
		{Name: "dot", Why: `an entry named "."`, Data: NAR(Dir(E(".", Dir(E("x", pwn)))))},
		{Name: "empty-name", Why: "an entry with an empty name", Data: NAR(Dir(E("", pwn)))},
		{Name: "slash-dotdot", Why: `a name "../x" that climbs out of the target`, Data: NAR(Dir(E("../"+EscapeName, pwn)))},
		{Name: "slash-absolute", Why: "an absolute name", Data: NAR(Dir(E(EscapeAbs, pwn)))},
		{Name: "slash-inner", Why: `a name "a/b"`, Data: NAR(Dir(E("a", Dir()), E("a/b", pwn)))},
		{Name: "nul-name", Why: "a name with NUL, which C would cut short", Data: NAR(Dir(E("a\x00b", pwn)))},
		{Name: "long-name", Why: "a name longer than NAME_MAX", Data: NAR(Dir(E(strings.Repeat("n", nar.MaxNameLen+1), pwn)))},

		// Escapes through symlinks.
		{Name: "symlink-then-file", Why: "a symlink out of the target, then a file of the same name to write through it", Data: NAR(Dir(
			E("a", Symlink(EscapeAbs)), E("a", pwn)))},
		{Name: "symlink-then-dir", Why: `a symlink to "..", then a directory of the same name to create entries through it`, Data: NAR(Dir(
			E("a", Symlink("..")), E("a", Dir(E(EscapeName, pwn)))))},
		{Name: "symlink-then-slash", Why: `a symlink to "..", then an entry "a/x" through it`, Data: NAR(Dir(
			E("a", Symlink("..")), E("a/"+EscapeName, pwn)))},
		{Name: "symlink-abs-then-slash", Why: "an absolute symlink, then an entry through it", Data: NAR(Dir(
			E("a", Symlink("/tmp")), E("a/nartest-escape", pwn)))},
		{Name: "symlink-then-dotdot", Why: `a symlink, then ".." after it`, Data: NAR(Dir(
			E("a", Symlink("/")), E("..", Dir(E(EscapeName, pwn)))))},
		{Name: "root-symlink-then-more", Why: "a symlink at the root, then a second root node to write through it", Trailing: true, Data: concat(
			NAR(Symlink("..")), new(Writer).Node(Dir(E(EscapeName, pwn))).Bytes())},

		// Names out of order.
		{Name: "duplicate-file", Why: "the same file twice", Data: NAR(Dir(E("a", File("1")), E("a", File("2"))))},
		{Name: "duplicate-dir", Why: "the same directory twice", Data: NAR(Dir(E("a", Dir(E("x", pwn))), E("a", Dir(E("y", pwn)))))},
		{Name: "file-then-dir", Why: "a directory where a file was", Data: NAR(Dir(E("a", File("")), E("a", Dir(E("b", pwn)))))},
		{Name: "dir-then-file", Why: "a file where a directory was", Data: NAR(Dir(E("a", Dir()), E("a", pwn)))},
		{Name: "unsorted", Why: "entries not in byte order", Data: NAR(Dir(E("b", File("")), E("a", File(""))))},
		{Name: "unsorted-case", Why: `"a" before "B", which sorts first by bytes`, Data: NAR(Dir(E("a", File("")), E("B", File(""))))},
		{Name: "unsorted-deep", Why: "entries out of order in a subdirectory", Data: NAR(Dir(E("d", Dir(E("y", File("")), E("x", File("")))), E("e", File(""))))},

		// Sizes and lengths.
		{Name: "huge-size", Why: "a file that declares 4 EiB and has 16 bytes", Data: new(Writer).Tokens(Magic, "(", "type", "regular", "contents").
			Uint64(1 << 62).Raw([]byte("0123456789abcdef")).Bytes()},
		{Name: "size-overflow", Why: "a file size beyond int64", Data: new(Writer).Tokens(Magic, "(", "type", "regular", "contents").
			Uint64(1<<63 + 8).Raw(make([]byte, 64)).Bytes()},
		{Name: "huge-name-length", Why: "a name length of 2^60 with no data", Data: new(Writer).Tokens(Magic, "(", "type", "directory", "entry", "(", "name").
			Uint64(1 << 60).Bytes()},
		{Name: "huge-keyword-length", Why: "a keyword length of 2^63", Data: new(Writer).Token(Magic).Uint64(1 << 63).Bytes()},
		{Name: "huge-target-length", Why: "a symlink target length of 2^40", Data: new(Writer).Tokens(Magic, "(", "type", "symlink", "target").
			Uint64(1 << 40).Raw(make([]byte, 4096)).Bytes()},
		{Name: "long-target", Why: "a symlink target longer than PATH_MAX", Data: NAR(Symlink(strings.Repeat("t", nar.MaxTargetLen+1)))},
		{Name: "long-type", Why: "a node type of 1000 bytes", Data: new(Writer).Tokens(Magic, "(", "type", strings.Repeat("x", 1000), ")").Bytes()},
		{Name: "deep", Why: "directories nested one deeper than allowed", Data: Nested(nar.MaxDepth + 1)},
		{Name: "long-path", Why: "a path one byte longer than allowed", Data: NAR(Path(longPath(nar.MaxPathLen+1), File("")))},

		// Grammar.
		{Name: "empty", Why: "no bytes at all", Data: []byte{}},
		{Name: "bad-magic", Why: "another archive version", Data: new(Writer).Tokens("nix-archive-2", "(", "type", "regular", "contents", "", ")").Bytes()},
		{Name: "no-magic", Why: "a node without the magic", Data: new(Writer).Node(File("")).Bytes()},
		{Name: "leading-garbage", Why: "bytes before the magic", Data: concat([]byte("garbage!"), NAR(File("")))},
		{Name: "unknown-type", Why: `node type "fifo"`, Data: new(Writer).Tokens(Magic, "(", "type", "fifo", ")").Bytes()},
		{Name: "unknown-type-nested", Why: `node type "hardlink" in a directory`, Data: new(Writer).Tokens(Magic, "(", "type", "directory",
			"entry", "(", "name", "a", "node", "(", "type", "hardlink", "target", "/etc/passwd", ")", ")", ")").Bytes()},
		{Name: "no-type", Why: `"(" without "type"`, Data: new(Writer).Tokens(Magic, "(", "regular", "contents", "", ")").Bytes()},
		{Name: "executable-value", Why: `"executable" with a value other than ""`, Data: new(Writer).Tokens(Magic, "(", "type", "regular", "executable", "yes", "contents", "", ")").Bytes()},
		{Name: "executable-after-contents", Why: `"executable" after "contents", which Nix never writes`, Data: new(Writer).Tokens(Magic, "(", "type", "regular", "contents", "x", "executable", "", ")").Bytes()},
		{Name: "executable-twice", Why: `"executable" twice`, Data: new(Writer).Tokens(Magic, "(", "type", "regular", "executable", "", "executable", "", "contents", "", ")").Bytes()},
		{Name: "contents-twice", Why: `"contents" twice`, Data: new(Writer).Tokens(Magic, "(", "type", "regular", "contents", "a", "contents", "b", ")").Bytes()},
		{Name: "no-contents", Why: `a regular file without "contents"`, Data: new(Writer).Tokens(Magic, "(", "type", "regular", ")").Bytes()},
		{Name: "symlink-no-target", Why: `a symlink without "target"`, Data: new(Writer).Tokens(Magic, "(", "type", "symlink", ")").Bytes()},
		{Name: "symlink-empty-target", Why: "a symlink to the empty string", Data: NAR(Symlink(""))},
		{Name: "symlink-nul-target", Why: "a symlink target with NUL", Data: NAR(Dir(E("a", Symlink("/etc\x00/passwd"))))},
		{Name: "symlink-extra", Why: "a symlink with a second target", Data: new(Writer).Tokens(Magic, "(", "type", "symlink", "target", "a", "target", "b", ")").Bytes()},
		{Name: "entry-typo", Why: `"entri" for "entry"`, Data: new(Writer).Tokens(Magic, "(", "type", "directory", "entri", "(", "name", "a", "node").Node(File("")).Tokens(")", ")").Bytes()},
		{Name: "entry-unclosed", Why: `an entry whose ")" is missing before the next one`, Data: new(Writer).Tokens(Magic, "(", "type", "directory", "entry", "(", "name", "a", "node").Node(File("")).
			Tokens("entry", "(", "name", "b", "node").Node(File("")).Tokens(")", ")").Bytes()},
		{Name: "entry-no-node", Why: `an entry without "node"`, Data: new(Writer).Tokens(Magic, "(", "type", "directory", "entry", "(", "name", "a", ")", ")").Bytes()},
		{Name: "extra-close", Why: `a ")" too many at the end`, Trailing: true, Data: concat(NAR(Dir(E("a", File("")))), new(Writer).Token(")").Bytes())},

		// Padding.
		{Name: "padding-magic", Why: "non-zero padding after the magic", Data: setByte(NAR(File("")), 8+13+1, 'x')},
		{Name: "padding-name", Why: "non-zero padding after a name", Data: paddedName()},
		{Name: "padding-contents", Why: "non-zero padding after file contents", Data: paddedContents()},
		{Name: "padding-missing", Why: "contents without their padding", Data: new(Writer).Tokens(Magic, "(", "type", "regular", "contents").
			Uint64(3).Raw([]byte("abc")).Token(")").Bytes()},

		// The end of the stream.
		{Name: "trailing-garbage", Why: "bytes after the archive", Trailing: true, Data: concat(NAR(Sample()), []byte("garbage"))},
		{Name: "trailing-zeros", Why: "zero bytes after the archive", Trailing: true, Data: concat(NAR(File("x")), make([]byte, 8))},
		{Name: "two-archives", Why: "a second archive after the first", Trailing: true, Data: concat(NAR(File("1")), NAR(File("2")))},
	}
	return append(cases, truncated()...)
}

// truncated cuts a valid archive at points inside every kind of token.
func truncated() []Case {
	full := NAR(Dir(
		E("a", Executable("contents that are long enough to cut")),
		E("b", Symlink("a")),
	))
	contents := indexOf(full, "contents that")
	points := []struct {
		name string
		at   int
	}{
		{"in-magic-length", 4},
		{"in-magic", 12},
		{"after-magic", 24},
		{"in-name", indexOf(full, "\x01\x00\x00\x00\x00\x00\x00\x00a") + 8},
		{"in-size", contents - 4},
		{"before-contents", contents},
		{"in-contents", contents + 10},
		{"in-padding", contents + 37},
		{"in-target", len(full) - 4*16 + 9},
		{"before-last-close", len(full) - 16},
		{"last-byte", len(full) - 1},
	}
	cases := make([]Case, len(points))
	for i, p := range points {
		cases[i] = Case{
			Name: "truncated-" + p.name,
			Why:  fmt.Sprintf("a valid archive of %d bytes cut after %d", len(full), p.at),
			Data: full[:p.at:p.at],
		}
	}
	return cases
}

// paddedName returns an archive whose entry name "a" has a non-zero byte in
// its padding.
func paddedName() []byte {
	b := NAR(Dir(E("a", File(""))))
	return setByte(b, indexOf(b, "\x01\x00\x00\x00\x00\x00\x00\x00a")+8+3, 1)
}

// paddedContents returns an archive whose file contents "abc" have a
// non-zero byte in their padding.
func paddedContents() []byte {
	b := NAR(File("abc"))
	return setByte(b, indexOf(b, "abc")+5, 0xff)
}

// longPath returns a path of n bytes made of names as long as allowed.
func longPath(n int) string {
	var b strings.Builder
	for c := byte('a'); b.Len() < n; c++ {
		if b.Len() > 0 {
			b.WriteByte('/')
		}
		// The last name fills up to n; the one before it leaves at least
		// one byte for it.
		size := min(nar.MaxNameLen, n-b.Len())
		if rest := n - b.Len() - size; rest == 1 {
			size--
		}
		b.WriteString(strings.Repeat(string(c), size))
	}
	return b.String()
}

func indexOf(b []byte, s string) int {
	i := strings.Index(string(b), s)
	if i < 0 {
		panic("nartest: invariant broken: " + fmt.Sprintf("%q", s) + " not in the archive built for it")
	}
	return i
}

func setByte(b []byte, i int, c byte) []byte {
	b[i] = c
	return b
}

func concat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}
