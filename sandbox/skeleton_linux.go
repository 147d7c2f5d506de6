package sandbox

import (
	"io/fs"

	"golang.org/x/sys/unix"
)

// makeSkeleton makes entries below the directory dirfd; top is what that
// directory is in the sandbox ("" for the root), for error messages.
// Directories listed with Group are given to o's group when o.chown. A
// skelLink that cannot be made (the host file is on another filesystem,
// or not ours to link) becomes a skelMountFile, and its Path is returned
// among unlinked: the caller binds the file there instead.
func makeSkeleton(dirfd int, top string, entries []skelEntry, o owner) (unlinked []string, err error) {
	for _, e := range entries {
		p := e.Path
		var op string
		switch e.Kind {
		case skelDir:
			op = "mkdir"
			err = unix.Mkdirat(dirfd, p, e.Mode&0o777)
			if err == nil {
				// Exactly Mode: the umask may have taken bits, and mkdir
				// drops the sticky bit.
				op, err = "chmod", unix.Fchmodat(dirfd, p, e.Mode, 0)
			}
			if err == nil && e.Group && o.chown {
				op, err = "chown", unix.Fchownat(dirfd, p, 0, o.gid, unix.AT_SYMLINK_NOFOLLOW)
			}
		case skelFile:
			op, err = makeFile(dirfd, p, e.Data)
		case skelMountDir:
			op, err = "mkdir", unix.Mkdirat(dirfd, p, 0o755)
		case skelMountFile:
			// mknod makes a regular file without opening it; what is
			// mounted on it hides its mode.
			op, err = "mknod", unix.Mknodat(dirfd, p, unix.S_IFREG|0o644, 0)
		case skelSymlink:
			op, err = "symlink", unix.Symlinkat(e.Data, dirfd, p)
		case skelLink:
			if unix.Linkat(unix.AT_FDCWD, e.Data, dirfd, p, 0) == nil {
				continue
			}
			op, err = "mknod", unix.Mknodat(dirfd, p, unix.S_IFREG|0o644, 0)
			unlinked = append(unlinked, p)
		default:
			panic("sandbox: invariant broken: unknown skeleton entry kind " + e.Kind)
		}
		if err != nil {
			return nil, &fs.PathError{Op: op, Path: top + "/" + p, Err: err}
		}
	}
	return unlinked, nil
}

// makeFile creates the file p below dirfd holding data, mode 0644,
// owned by whoever we are (root, in a build of root's); it returns the
// failed operation's name.
func makeFile(dirfd int, p, data string) (op string, err error) {
	fd, err := unix.Openat(dirfd, p, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return "open", err
	}
	defer unix.Close(fd)
	for b := []byte(data); len(b) > 0; {
		n, err := unix.Write(fd, b)
		if err != nil {
			return "write", err
		}
		b = b[n:]
	}
	// Exactly 0644, whatever the umask.
	if err := unix.Fchmod(fd, 0o644); err != nil {
		return "chmod", err
	}
	return "", nil
}
