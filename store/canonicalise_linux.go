package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// canonicalMtime is the modification time of everything in the store.
// Nix uses 1 rather than 0 because some tools treat a zero mtime as
// "missing"; any fixed value makes contents independent of build time.
const canonicalMtime = 1

// Canonicalise makes the tree at root immutable in Nix's way: owned by
// this process's user, mode 0444 (0555 if the owner could execute) for
// files and 0555 for directories, no setuid, setgid or sticky bits, mtime
// 1, no extended attributes. Symlinks keep their target. Anything but
// regular files, directories and symlinks is an error.
func Canonicalise(root string) error {
	return canonicalise(root, os.Getuid(), os.Getgid())
}

func canonicalise(name string, uid, gid int) error {
	var st unix.Stat_t
	if err := unix.Lstat(name, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: name, Err: err}
	}
	var mode uint32
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		mode = 0o444
		if st.Mode&unix.S_IXUSR != 0 {
			mode = 0o555
		}
	case unix.S_IFDIR:
		mode = 0o555
		// Make sure we can enter and change the directory's entries while
		// we are not root.
		if st.Mode&0o700 != 0o700 {
			if err := unix.Chmod(name, st.Mode&0o7777|0o700); err != nil {
				return &os.PathError{Op: "chmod", Path: name, Err: err}
			}
		}
		entries, err := os.ReadDir(name)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := canonicalise(filepath.Join(name, e.Name()), uid, gid); err != nil {
				return err
			}
		}
	case unix.S_IFLNK:
	default:
		return fmt.Errorf("file '%s' has an unsupported type", name)
	}
	if err := removeXattrs(name); err != nil {
		return err
	}
	if int(st.Uid) != uid || int(st.Gid) != gid {
		if err := unix.Lchown(name, uid, gid); err != nil {
			return &os.PathError{Op: "lchown", Path: name, Err: err}
		}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		// chown may have cleared setuid bits already; set the mode after it.
		if err := unix.Chmod(name, mode); err != nil {
			return &os.PathError{Op: "chmod", Path: name, Err: err}
		}
	}
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Sec: canonicalMtime}}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimensat", Path: name, Err: err}
	}
	return nil
}

// removeXattrs drops extended attributes, which NARs cannot represent.
func removeXattrs(name string) error {
	sz, err := unix.Llistxattr(name, nil)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
			return nil
		}
		return &os.PathError{Op: "llistxattr", Path: name, Err: err}
	}
	if sz == 0 {
		return nil
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(name, buf)
	if err != nil {
		return &os.PathError{Op: "llistxattr", Path: name, Err: err}
	}
	start := 0
	for i := 0; i < sz; i++ {
		if buf[i] != 0 {
			continue
		}
		attr := string(buf[start:i])
		start = i + 1
		// SELinux labels are managed by the system, not by us.
		if attr == "security.selinux" || attr == "" {
			continue
		}
		if err := unix.Lremovexattr(name, attr); err != nil && !errors.Is(err, unix.ENODATA) {
			return &os.PathError{Op: "lremovexattr " + attr, Path: name, Err: err}
		}
	}
	return nil
}

// removeTree deletes a tree, making read-only directories writable first
// where that is needed (it is not for root).
func removeTree(name string) error {
	err := os.RemoveAll(name)
	if err == nil || !errors.Is(err, fs.ErrPermission) {
		return err
	}
	filepath.WalkDir(name, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
	return os.RemoveAll(name)
}

// RemoveTree deletes a tree that may hold canonicalised (read-only)
// directories.
func RemoveTree(name string) error { return removeTree(name) }
