package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// This file removes what Run made on disk: the build directory and the
// chroot's.

// removeTree removes dir and everything below it, but nothing that is
// mounted at or below it in our mount namespace: removing through a bind
// of a sandbox path would destroy the host's files. The child's mounts
// live only in its own mount namespace, which died with it, so there
// should be none; a mount point found on the way (openat2's
// RESOLVE_NO_XDEV refuses to enter it, unlink and rmdir refuse to remove
// it) fails the removal, and what is mounted there is not touched. That
// check costs nothing beyond the removal, unlike reading
// /proc/self/mountinfo, as long as the host's mount table.
//
// A builder may leave directories without write permission; as root that
// does not matter, and otherwise each is made writable when the removal
// finds it so.
func removeTree(dir string) error {
	parent, err := unix.Open(filepath.Dir(dir), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: filepath.Dir(dir), Err: err}
	}
	defer unix.Close(parent)
	err = removeAt(parent, filepath.Base(dir), dir)
	if errors.Is(err, errNoOpenat2) {
		return removeTreeSlow(dir)
	}
	return err
}

// errNoOpenat2 is what removeAt returns, before it removed anything, when
// the kernel has no openat2 (or a seccomp filter refuses it).
var errNoOpenat2 = errors.New("openat2 is unavailable")

// removeAt removes name, in the directory dirfd, and everything below it
// (see removeTree); p is its path, for errors.
func removeAt(dirfd int, name, p string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR {
		return &fs.PathError{Op: "unlink", Path: p, Err: err}
	}
	how := &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_XDEV | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_BENEATH,
	}
	fd, err := unix.Openat2(dirfd, name, how)
	if err == unix.EACCES && os.Geteuid() != 0 {
		// Not readable: ours, so we may change that.
		if unix.Fchmodat(dirfd, name, 0o700, 0) == nil {
			fd, err = unix.Openat2(dirfd, name, how)
		}
	}
	switch {
	case err == unix.ENOSYS || err == unix.EPERM:
		return errNoOpenat2
	case err == unix.EXDEV:
		return fmt.Errorf("not removing %s: it is a mount point", p)
	case err != nil:
		return &fs.PathError{Op: "openat2", Path: p, Err: err}
	}
	d := os.NewFile(uintptr(fd), p)
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return err
	}
	madeWritable := false
	for _, n := range names {
		err := removeAt(fd, n, p+"/"+n)
		var pe *fs.PathError
		if errors.As(err, &pe) && pe.Err == unix.EACCES && pe.Path == p+"/"+n && !madeWritable && os.Geteuid() != 0 {
			// Not writable: ours, so we may change that.
			madeWritable = true
			if unix.Fchmod(fd, 0o700) == nil {
				err = removeAt(fd, n, p+"/"+n)
			}
		}
		if err != nil {
			return err
		}
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && err != unix.ENOENT {
		return &fs.PathError{Op: "rmdir", Path: p, Err: err}
	}
	return nil
}

// checkNotMounted fails if anything is mounted at or below dir in our
// mount namespace.
func checkNotMounted(dir string) error {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			return fmt.Errorf("%s is a mount point", mp)
		}
	}
	return nil
}

// unescapeMountinfo undoes the octal escapes (\040 for a space, …) of
// /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var out strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, ok := octal3(s[i+1 : i+4]); ok {
				out.WriteByte(v)
				i += 3
				continue
			}
		}
		out.WriteByte(s[i])
	}
	return out.String()
}

func octal3(s string) (byte, bool) {
	if len(s) != 3 {
		return 0, false
	}
	v := 0
	for i := 0; i < 3; i++ {
		if s[i] < '0' || s[i] > '7' {
			return 0, false
		}
		v = v*8 + int(s[i]-'0')
	}
	return byte(v), v < 256
}

// removeTreeSlow is removeTree for kernels without openat2 (Linux
// before 5.6): it reads the mount table first.
func removeTreeSlow(p string) error {
	if err := checkNotMounted(p); err != nil {
		return fmt.Errorf("not removing %s: %w", p, err)
	}
	err := os.RemoveAll(p)
	if err == nil || os.Geteuid() == 0 {
		return err
	}
	filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(q, 0o700)
		}
		return nil
	})
	return os.RemoveAll(p)
}
