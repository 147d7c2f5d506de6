package nar

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// restoreBufSize is the buffer through which Restore copies file contents;
// reads of the Reader this large bypass its own buffer.
const restoreBufSize = 256 << 10

// The modes of restored nodes. The store canonicalises them later (no
// write bits, mtime 1); Restore only has to get the executable bit right.
const (
	fileMode       = 0o644
	executableMode = 0o755
	dirMode        = 0o755
)

// Restore unpacks the NAR read from r into target, which must not exist
// and whose parent directory must. The archive must be followed by the end
// of r. Restore creates every node with system calls relative to
// directories it created and opened itself, never following a symlink, so
// it writes nothing outside target whatever the archive says. Regular files
// get mode 0644 or 0755 and directories 0755, regardless of the umask. On
// any error Restore removes everything it created, target included, and
// returns the error; a malformed archive gives a *FormatError.
func Restore(r io.Reader, target string) error {
	if err := restore(r, target); err != nil {
		return fmt.Errorf("restoring nar to %s: %w", target, err)
	}
	return nil
}

func restore(r io.Reader, target string) error {
	target = filepath.Clean(target)
	parent, base := filepath.Dir(target), filepath.Base(target)
	if base == "/" || base == "." || base == ".." {
		return errors.New("target must name a new file")
	}
	pfd, err := openat(unix.AT_FDCWD, parent, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", parent, err)
	}
	defer unix.Close(pfd)

	rs := &restorer{nr: NewReader(r), target: target, buf: make([]byte, restoreBufSize)}
	err = rs.run(pfd, base)
	rs.closeDirs(0)
	if err != nil && rs.created {
		if rerr := removeAt(pfd, base); rerr != nil {
			err = errors.Join(err, fmt.Errorf("removing %s: %w", target, rerr))
		}
	}
	return err
}

// restorer holds the state of one Restore.
type restorer struct {
	nr      *Reader
	target  string
	buf     []byte
	dirs    []openDir // the directories around the current node, outermost first
	created bool      // whether target was created and must be removed on error
}

// openDir is a directory Restore created, open as fd.
type openDir struct {
	path string // as in Header.Path
	fd   int
}

func (rs *restorer) run(pfd int, base string) error {
	h, err := rs.nr.Next()
	if err != nil {
		return err
	}
	if err := rs.create(pfd, base, h); err != nil {
		return err
	}
	for {
		h, err := rs.nr.Next()
		if err == io.EOF {
			return rs.nr.checkEOF()
		}
		if err != nil {
			return err
		}
		dir, name := "", h.Path
		if i := strings.LastIndexByte(h.Path, '/'); i >= 0 {
			dir, name = h.Path[:i], h.Path[i+1:]
		}
		// The Reader returns nodes depth first, so the parent is one of
		// the directories still open; the ones after it are complete.
		i := len(rs.dirs) - 1
		for i >= 0 && rs.dirs[i].path != dir {
			i--
		}
		if i < 0 {
			panic("nar: invariant broken: Reader returned " + h.Path + " outside the directories it opened")
		}
		rs.closeDirs(i + 1)
		if err := rs.create(rs.dirs[i].fd, name, h); err != nil {
			return err
		}
	}
}

// create creates the node h as name in the directory dirfd.
func (rs *restorer) create(dirfd int, name string, h *Header) error {
	switch h.Type {
	case TypeRegular:
		return rs.regular(dirfd, name, h)
	case TypeDirectory:
		return rs.directory(dirfd, name, h)
	case TypeSymlink:
		if err := unix.Symlinkat(h.LinkTarget, dirfd, name); err != nil {
			return fmt.Errorf("symlinkat %s: %w", rs.path(h), err)
		}
		rs.created = true
		return nil
	}
	panic("nar: invariant broken: Reader returned a header of type " + h.Type.String())
}

func (rs *restorer) regular(dirfd int, name string, h *Header) error {
	mode := uint32(fileMode)
	if h.Executable {
		mode = executableMode
	}
	// O_EXCL and O_NOFOLLOW: never open what is already there, least of
	// all through a symlink.
	fd, err := openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW, mode)
	if err != nil {
		return fmt.Errorf("openat %s: %w", rs.path(h), err)
	}
	rs.created = true
	if err := rs.fill(fd, h, mode); err != nil {
		unix.Close(fd)
		return err
	}
	if err := unix.Close(fd); err != nil {
		return fmt.Errorf("close %s: %w", rs.path(h), err)
	}
	return nil
}

// fill sets the mode of the new file fd and writes its contents.
func (rs *restorer) fill(fd int, h *Header, mode uint32) error {
	// The umask may have taken bits away at creation.
	if err := unix.Fchmod(fd, mode); err != nil {
		return fmt.Errorf("fchmod %s: %w", rs.path(h), err)
	}
	for {
		n, err := rs.nr.Read(rs.buf)
		if n > 0 {
			if werr := writeFull(fd, rs.buf[:n]); werr != nil {
				return fmt.Errorf("write %s: %w", rs.path(h), werr)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (rs *restorer) directory(dirfd int, name string, h *Header) error {
	if err := unix.Mkdirat(dirfd, name, dirMode); err != nil {
		return fmt.Errorf("mkdirat %s: %w", rs.path(h), err)
	}
	rs.created = true
	fd, err := openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("openat %s: %w", rs.path(h), err)
	}
	rs.dirs = append(rs.dirs, openDir{path: h.Path, fd: fd})
	if err := unix.Fchmod(fd, dirMode); err != nil {
		return fmt.Errorf("fchmod %s: %w", rs.path(h), err)
	}
	return nil
}

// closeDirs closes the open directories from index i on.
func (rs *restorer) closeDirs(i int) {
	for _, d := range rs.dirs[i:] {
		unix.Close(d.fd)
	}
	rs.dirs = rs.dirs[:i]
}

// path is the file system path of the node h, for error messages.
func (rs *restorer) path(h *Header) string {
	if h.Path == "" {
		return rs.target
	}
	return rs.target + "/" + h.Path
}
