package nar

import (
	"encoding/binary"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// dumpBufSize is Dump's one buffer. Tokens and file contents are gathered in
// it and go to the writer in writes of this size: a tree of many small files
// costs few writes, and a big file is read and written in large chunks.
const dumpBufSize = 256 << 10

// Dump writes the NAR of the file, symlink or directory at path to w. Path
// itself is not followed if it is a symlink. Dump reads the tree with
// system calls relative to the directories it opened, so the path of a node
// is resolved only once. It fails on a fifo, socket or device, naming its
// path, and on directories nested deeper than MaxDepth.
func Dump(w io.Writer, path string) error {
	d := &dumper{
		w:      w,
		buf:    make([]byte, dumpBufSize),
		dirent: make([]byte, direntBufSize),
		link:   make([]byte, MaxTargetLen+1),
	}
	d.token(magic)
	var st unix.Stat_t
	if err := unix.Fstatat(unix.AT_FDCWD, path, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("dumping %s: lstat: %w", path, err)
	}
	if err := d.node(unix.AT_FDCWD, "", path, direntType(st.Mode), 1, -1); err != nil {
		return err
	}
	d.flush()
	if d.err != nil {
		return fmt.Errorf("dumping %s: %w", path, d.err)
	}
	return nil
}

// dumper holds the state of one Dump.
type dumper struct {
	w   io.Writer
	buf []byte // the output not yet written is buf[:n]
	n   int

	dirent []byte   // getdents buffer
	link   []byte   // readlink buffer
	ents   []dirent // entries of the directories being dumped, outermost first

	// err is the first error of w. The token methods then discard their
	// output, and the loops over contents and entries stop.
	err error
}

// node dumps the node name in the directory dirfd, whose path is dir, and
// which has the d_type typ. Depth counts the directories around it and
// relLen is the length of its path in the archive (-1 for the root; the
// root's children have no leading slash).
func (d *dumper) node(dirfd int, dir, name string, typ uint8, depth, relLen int) error {
	if relLen > MaxPathLen {
		return fmt.Errorf("dumping %s: path in the archive longer than %d bytes", filepath.Join(dir, name), MaxPathLen)
	}
	switch typ {
	case unix.DT_REG:
		return d.regular(dirfd, dir, name)
	case unix.DT_DIR:
		return d.directory(dirfd, dir, name, depth, relLen)
	case unix.DT_LNK:
		return d.symlink(dirfd, dir, name)
	case unix.DT_UNKNOWN:
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return dumpError(dir, name, "fstatat", err)
		}
		if t := direntType(st.Mode); t != unix.DT_UNKNOWN {
			return d.node(dirfd, dir, name, t, depth, relLen)
		}
	}
	return fmt.Errorf("dumping %s: unsupported file type: %s", filepath.Join(dir, name), direntTypeName(typ))
}

func (d *dumper) regular(dirfd int, dir, name string) error {
	// O_NONBLOCK: should the file have been replaced by a fifo since it was
	// listed, the open must not wait for a writer; fstat then refuses it.
	fd, err := openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return dumpError(dir, name, "openat", err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return dumpError(dir, name, "fstat", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("dumping %s: unsupported file type: %s", filepath.Join(dir, name), direntTypeName(direntType(st.Mode)))
	}
	d.token(tokOpen)
	d.token(tokType)
	d.token(tokRegular)
	if st.Mode&unix.S_IXUSR != 0 {
		d.token(tokExecutable)
		d.token("")
	}
	d.token(tokContents)
	size := uint64(st.Size)
	d.uint64(size)
	// Contents are read straight into the output buffer rather than copied
	// through io.CopyBuffer: small files then share one write with the
	// tokens around them, and no byte is copied twice.
	for left := size; left > 0; {
		if d.n == len(d.buf) {
			d.flush()
			if d.err != nil {
				return fmt.Errorf("dumping %s: %w", filepath.Join(dir, name), d.err)
			}
		}
		chunk := int(min(left, uint64(len(d.buf)-d.n)))
		m, err := readFull(fd, d.buf[d.n:d.n+chunk])
		d.n += m
		if err != nil {
			return dumpError(dir, name, "read", err)
		}
		if m < chunk {
			return fmt.Errorf("dumping %s: file shrank while being read: %d bytes missing", filepath.Join(dir, name), left-uint64(m))
		}
		left -= uint64(m)
	}
	d.zeros(padding(size))
	d.token(tokClose)
	return nil
}

func (d *dumper) symlink(dirfd int, dir, name string) error {
	n, err := unix.Readlinkat(dirfd, name, d.link)
	if err != nil {
		return dumpError(dir, name, "readlinkat", err)
	}
	if n > MaxTargetLen {
		return fmt.Errorf("dumping %s: symlink target longer than %d bytes", filepath.Join(dir, name), MaxTargetLen)
	}
	d.token(tokOpen)
	d.token(tokType)
	d.token(tokSymlink)
	d.token(tokTarget)
	d.tokenBytes(d.link[:n])
	d.token(tokClose)
	return nil
}

func (d *dumper) directory(dirfd int, dir, name string, depth, relLen int) error {
	path := filepath.Join(dir, name)
	if depth > MaxDepth {
		return fmt.Errorf("dumping %s: directories nested deeper than %d", path, MaxDepth)
	}
	fd, err := openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return dumpError(dir, name, "openat", err)
	}
	defer unix.Close(fd)
	// The entries of this directory go at the end of d.ents and are cut off
	// when it is done, so that one slice serves the whole tree. Deeper
	// directories may grow d.ents, so it is indexed afresh each time.
	base := len(d.ents)
	defer func() { d.ents = d.ents[:base] }()
	d.ents, err = readDir(fd, d.dirent, d.ents)
	if err != nil {
		return fmt.Errorf("dumping %s: getdents64: %w", path, err)
	}
	slices.SortFunc(d.ents[base:], func(a, b dirent) int { return strings.Compare(a.name, b.name) })
	d.token(tokOpen)
	d.token(tokType)
	d.token(tokDirectory)
	for i := base; i < len(d.ents) && d.err == nil; i++ {
		e := d.ents[i]
		d.token(tokEntry)
		d.token(tokOpen)
		d.token(tokName)
		d.token(e.name)
		d.token(tokNode)
		if err := d.node(fd, path, e.name, e.typ, depth+1, relLen+1+len(e.name)); err != nil {
			return err
		}
		d.token(tokClose)
	}
	d.token(tokClose)
	return nil
}

// token appends a string token to the output. Tokens are at most
// MaxTargetLen long and fit in an empty buffer.
func (d *dumper) token(s string) {
	size := 8 + len(s) + padding(uint64(len(s)))
	d.makeRoom(size)
	binary.LittleEndian.PutUint64(d.buf[d.n:], uint64(len(s)))
	copy(d.buf[d.n+8:], s)
	clear(d.buf[d.n+8+len(s) : d.n+size])
	d.n += size
}

func (d *dumper) tokenBytes(b []byte) {
	size := 8 + len(b) + padding(uint64(len(b)))
	d.makeRoom(size)
	binary.LittleEndian.PutUint64(d.buf[d.n:], uint64(len(b)))
	copy(d.buf[d.n+8:], b)
	clear(d.buf[d.n+8+len(b) : d.n+size])
	d.n += size
}

func (d *dumper) uint64(v uint64) {
	d.makeRoom(8)
	binary.LittleEndian.PutUint64(d.buf[d.n:], v)
	d.n += 8
}

func (d *dumper) zeros(n int) {
	d.makeRoom(n)
	clear(d.buf[d.n : d.n+n])
	d.n += n
}

// makeRoom flushes the buffer unless size more bytes fit in it.
func (d *dumper) makeRoom(size int) {
	if len(d.buf)-d.n < size {
		d.flush()
	}
}

// flush writes the buffer out, or discards it once the writer failed.
func (d *dumper) flush() {
	if d.n == 0 || d.err != nil {
		d.n = 0
		return
	}
	n, err := d.w.Write(d.buf[:d.n])
	if err == nil && n < d.n {
		err = io.ErrShortWrite
	}
	if err != nil {
		d.err = fmt.Errorf("writing nar: %w", err)
	}
	d.n = 0
}

func dumpError(dir, name, call string, err error) error {
	return fmt.Errorf("dumping %s: %s: %w", filepath.Join(dir, name), call, err)
}
