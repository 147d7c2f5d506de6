package nar

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"strconv"
)

// readerBufSize is the size of a Reader's buffer. It must hold the longest
// token but file contents (a symlink target of MaxTargetLen bytes, its length
// and padding); beyond that, larger means fewer reads of the source for
// archives of many small files.
const readerBufSize = 64 << 10

// maxEmptyReads is how often the source may return no data and no error in
// a row before the Reader gives up, as bufio does.
const maxEmptyReads = 100

// readerState is where a Reader is in the grammar.
type readerState uint8

const (
	stateStart   readerState = iota // before the magic
	stateFile                       // in the contents of a regular file
	stateNodeEnd                    // after the ")" that closes a node
	stateDirBody                    // in a directory, before "entry" or ")"
	stateDone                       // after the final ")"
)

// dirFrame is a directory the Reader is inside of.
type dirFrame struct {
	path string
	last string // name of the previous entry; "" before the first, as names are never empty
}

// Reader reads a NAR from a stream, node by node, in archive order: depth
// first, each directory before its entries, and the entries sorted by name.
// It checks the archive as it goes (see the package documentation) and
// holds no more than one token in memory, never file contents. It is not
// safe for concurrent use and does not close its source. It reads ahead of
// the archive's end into its buffer, so the source is not positioned just
// after the archive when Next returns io.EOF.
type Reader struct {
	src    io.Reader
	srcErr error // first error of src, returned again instead of reading on

	buf        []byte
	start, end int   // the buffered bytes are buf[start:end]
	off        int64 // offset in the archive of buf[start]

	err   error // sticky: once set, Next and Read return it
	state readerState
	dirs  []dirFrame // directories around the current node, innermost last
	path  string     // path of the current node

	remaining int64 // unread contents of the current regular file
	pad       int   // padding after the current regular file's contents
}

// NewReader returns a Reader of the archive in r.
func NewReader(r io.Reader) *Reader {
	return &Reader{src: r, buf: make([]byte, readerBufSize)}
}

// Next advances to the next node of the archive and returns its header,
// skipping whatever of the current regular file's contents has not been
// read. The root comes first, with Path "". After the archive's final ")"
// Next returns io.EOF. Any other error is final: Next and Read keep
// returning it. A malformed archive gives a *FormatError.
func (r *Reader) Next() (*Header, error) {
	if r.err != nil {
		return nil, r.err
	}
	h, err := r.next()
	if err != nil {
		r.err = err
		return nil, err
	}
	return h, nil
}

// Read reads from the contents of the current node, which must be a regular
// file; it returns io.EOF at the end of the contents, and at once for other
// node types.
func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil && r.err != io.EOF {
		return 0, r.err
	}
	if r.state != stateFile || r.remaining == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.remaining {
		p = p[:r.remaining]
	}
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	switch {
	case r.start < r.end:
		n = copy(p, r.buf[r.start:r.end])
		r.consume(n)
	case len(p) >= len(r.buf):
		// Large reads bypass the buffer: no copy for the contents of big files.
		m, err := r.read(p)
		if err != nil {
			r.err = r.sourceError(err, 0, "file contents")
			return 0, r.err
		}
		n = m
		r.off += int64(n)
	default:
		r.start, r.end = 0, 0
		m, err := r.read(r.buf)
		if err != nil {
			r.err = r.sourceError(err, 0, "file contents")
			return 0, r.err
		}
		r.end = m
		n = copy(p, r.buf[:m])
		r.consume(n)
	}
	r.remaining -= int64(n)
	return n, nil
}

// checkEOF returns an error unless the source ends right after the archive.
// Call it only after Next returned io.EOF.
func (r *Reader) checkEOF() error {
	if r.start == r.end {
		n, err := r.read(r.buf[:1])
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return r.sourceError(err, 0, "end of stream")
		}
		r.start, r.end = 0, n
	}
	return &FormatError{Offset: r.off, Msg: "trailing data after the end of the archive"}
}

func (r *Reader) next() (*Header, error) {
	switch r.state {
	case stateStart:
		if err := r.expect(magic); err != nil {
			return nil, err
		}
		return r.node("")
	case stateFile:
		if err := r.endFile(); err != nil {
			return nil, err
		}
	}
	for {
		switch r.state {
		case stateNodeEnd:
			if len(r.dirs) == 0 {
				r.state = stateDone
				return nil, io.EOF
			}
			// The node just ended was an entry's; close the entry.
			if err := r.expect(tokClose); err != nil {
				return nil, err
			}
			r.path = r.dirs[len(r.dirs)-1].path
			r.state = stateDirBody
		case stateDirBody:
			off := r.off
			tok, err := r.token(maxKeywordLen, `"entry" or ")"`, false)
			if err != nil {
				return nil, err
			}
			switch string(tok) {
			case tokEntry:
				return r.entry()
			case tokClose:
				r.dirs = r.dirs[:len(r.dirs)-1]
				r.state = stateNodeEnd
			default:
				return nil, r.errorf(off, `expected "entry" or ")", got %s`, quote(tok))
			}
		case stateDone:
			return nil, io.EOF
		default:
			panic("nar: invariant broken: Reader in state " + strconv.Itoa(int(r.state)) + " between nodes")
		}
	}
}

// entry reads a directory entry up to and including its node's header.
func (r *Reader) entry() (*Header, error) {
	d := &r.dirs[len(r.dirs)-1]
	if err := r.expect(tokOpen); err != nil {
		return nil, err
	}
	if err := r.expect(tokName); err != nil {
		return nil, err
	}
	off := r.off
	tok, err := r.token(MaxNameLen, "entry name", false)
	if err != nil {
		return nil, err
	}
	if msg := checkName(tok); msg != "" {
		return nil, r.errorf(off, "%s", msg)
	}
	if d.last != "" && string(tok) <= d.last {
		if string(tok) == d.last {
			return nil, r.errorf(off, "duplicate entry %s", quote(tok))
		}
		return nil, r.errorf(off, "entry %s after %q: entries must be sorted by name", quote(tok), d.last)
	}
	plen := len(tok)
	if d.path != "" {
		plen += len(d.path) + 1
	}
	if plen > MaxPathLen {
		return nil, r.errorf(off, "path of entry %s is longer than %d bytes", quote(tok), MaxPathLen)
	}
	// One allocation for the path, of which the name is the tail.
	path := string(tok)
	if d.path != "" {
		path = d.path + "/" + string(tok)
	}
	d.last = path[len(path)-len(tok):]
	r.path = path
	if err := r.expect(tokNode); err != nil {
		return nil, err
	}
	return r.node(path)
}

// checkName returns why name may not be an entry name, or "" if it may.
func checkName(name []byte) string {
	switch {
	case len(name) == 0:
		return "entry name is empty"
	case string(name) == "." || string(name) == "..":
		return fmt.Sprintf("entry name %q is not allowed", name)
	case bytes.IndexByte(name, '/') >= 0:
		return fmt.Sprintf("entry name %s contains a slash", quote(name))
	case bytes.IndexByte(name, 0) >= 0:
		return fmt.Sprintf("entry name %s contains NUL", quote(name))
	}
	return ""
}

// node reads a node up to the end of its header: the whole node for a
// symlink, the size for a regular file, the type for a directory.
func (r *Reader) node(path string) (*Header, error) {
	r.path = path
	if err := r.expect(tokOpen); err != nil {
		return nil, err
	}
	if err := r.expect(tokType); err != nil {
		return nil, err
	}
	off := r.off
	tok, err := r.token(maxKeywordLen, "node type", false)
	if err != nil {
		return nil, err
	}
	switch string(tok) {
	case tokRegular:
		return r.regular(path)
	case tokSymlink:
		return r.symlink(path)
	case tokDirectory:
		if len(r.dirs) >= MaxDepth {
			return nil, r.errorf(off, "directories nested deeper than %d", MaxDepth)
		}
		r.dirs = append(r.dirs, dirFrame{path: path})
		r.state = stateDirBody
		return &Header{Path: path, Type: TypeDirectory}, nil
	}
	return nil, r.errorf(off, `expected node type "regular", "symlink" or "directory", got %s`, quote(tok))
}

func (r *Reader) regular(path string) (*Header, error) {
	h := &Header{Path: path, Type: TypeRegular}
	off := r.off
	tok, err := r.token(maxKeywordLen, `"executable" or "contents"`, false)
	if err != nil {
		return nil, err
	}
	switch string(tok) {
	case tokExecutable:
		h.Executable = true
		off = r.off
		tok, err := r.token(maxKeywordLen, `"" after "executable"`, false)
		if err != nil {
			return nil, err
		}
		if len(tok) != 0 {
			return nil, r.errorf(off, `expected "" after "executable", got %s`, quote(tok))
		}
		if err := r.expect(tokContents); err != nil {
			return nil, err
		}
	case tokContents:
	default:
		return nil, r.errorf(off, `expected "executable" or "contents", got %s`, quote(tok))
	}
	off = r.off
	if err := r.fill(8, "file size", false); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint64(r.buf[r.start:])
	if n > math.MaxInt64 {
		return nil, r.errorf(off, "file size %d is too large", n)
	}
	r.consume(8)
	h.Size = int64(n)
	r.remaining = int64(n)
	r.pad = padding(n)
	r.state = stateFile
	return h, nil
}

func (r *Reader) symlink(path string) (*Header, error) {
	if err := r.expect(tokTarget); err != nil {
		return nil, err
	}
	off := r.off
	tok, err := r.token(MaxTargetLen, "symlink target", false)
	if err != nil {
		return nil, err
	}
	switch {
	case len(tok) == 0:
		return nil, r.errorf(off, "symlink target is empty")
	case bytes.IndexByte(tok, 0) >= 0:
		return nil, r.errorf(off, "symlink target %s contains NUL", quote(tok))
	}
	h := &Header{Path: path, Type: TypeSymlink, LinkTarget: string(tok)}
	if err := r.expect(tokClose); err != nil {
		return nil, err
	}
	r.state = stateNodeEnd
	return h, nil
}

// endFile skips the rest of the current file's contents and reads its
// padding and the ")" that closes its node.
func (r *Reader) endFile() error {
	for r.remaining > 0 {
		if r.start == r.end {
			if err := r.fill(1, "file contents", false); err != nil {
				return err
			}
		}
		n := int(min(r.remaining, int64(r.end-r.start)))
		r.consume(n)
		r.remaining -= int64(n)
	}
	off := r.off
	if err := r.fill(r.pad, "padding after file contents", false); err != nil {
		return err
	}
	if !isZero(r.buf[r.start : r.start+r.pad]) {
		return r.errorf(off, "non-zero padding after file contents")
	}
	r.consume(r.pad)
	if err := r.expect(tokClose); err != nil {
		return err
	}
	r.state = stateNodeEnd
	return nil
}

// expect reads a token that must be want.
func (r *Reader) expect(want string) error {
	off := r.off
	tok, err := r.token(maxKeywordLen, want, true)
	if err != nil {
		return err
	}
	if string(tok) != want {
		return r.errorf(off, "expected %q, got %s", want, quote(tok))
	}
	return nil
}

// token reads a string of at most max bytes. Errors describe the string
// expected as what, quoted if it is a keyword; it is formatted only then,
// as this is the hot path. The result is valid until the next read.
func (r *Reader) token(max int, what string, keyword bool) ([]byte, error) {
	off := r.off
	if err := r.fill(8, what, keyword); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint64(r.buf[r.start:])
	if n > uint64(max) {
		return nil, r.errorf(off, "expected %s, got a string of %d bytes (at most %d allowed)", describe(what, keyword), n, max)
	}
	size := 8 + int(n) + padding(n)
	if err := r.fill(size, what, keyword); err != nil {
		return nil, err
	}
	tok := r.buf[r.start+8 : r.start+8+int(n)]
	if !isZero(r.buf[r.start+8+int(n) : r.start+size]) {
		return nil, r.errorf(off+8+int64(n), "non-zero padding after %s", describe(what, keyword))
	}
	r.consume(size)
	return tok, nil
}

// fill makes at least n bytes available in the buffer, for reading what
// as token describes it.
func (r *Reader) fill(n int, what string, keyword bool) error {
	if r.end-r.start >= n {
		return nil
	}
	if r.start > 0 {
		r.end = copy(r.buf, r.buf[r.start:r.end])
		r.start = 0
	}
	for r.end < n {
		m, err := r.read(r.buf[r.end:])
		if err != nil {
			return r.sourceError(err, int64(r.end), describe(what, keyword))
		}
		r.end += m
	}
	return nil
}

// read reads from the source into p. It returns data or an error, never
// both and never neither, and once the source failed it keeps returning
// that error without reading again.
func (r *Reader) read(p []byte) (int, error) {
	if r.srcErr != nil {
		return 0, r.srcErr
	}
	for range maxEmptyReads {
		n, err := r.src.Read(p)
		if err != nil {
			r.srcErr = err
		}
		if n > 0 {
			return n, nil
		}
		if err != nil {
			return 0, err
		}
	}
	r.srcErr = io.ErrNoProgress
	return 0, r.srcErr
}

func (r *Reader) consume(n int) {
	r.start += n
	r.off += int64(n)
}

// sourceError turns an error of the source, found at delta bytes after
// r.off while reading what, into the Reader's error: the end of the source
// means the archive is truncated.
func (r *Reader) sourceError(err error, delta int64, what string) error {
	if err == io.EOF {
		return &FormatError{Offset: r.off + delta, Path: r.path, Msg: "expected " + what, Err: io.ErrUnexpectedEOF}
	}
	return fmt.Errorf("reading nar at byte %d: %w", r.off+delta, err)
}

func (r *Reader) errorf(off int64, format string, args ...any) error {
	return &FormatError{Offset: off, Path: r.path, Msg: fmt.Sprintf(format, args...)}
}

// describe describes what a token was expected to be.
func describe(what string, keyword bool) string {
	if keyword {
		return strconv.Quote(what)
	}
	return what
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// quote quotes a token for an error message, shortened if it is long.
func quote(tok []byte) string {
	const max = 40
	if len(tok) > max {
		return strconv.Quote(string(tok[:max])) + "…"
	}
	return strconv.Quote(string(tok))
}
