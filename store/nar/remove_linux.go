package nar

import "golang.org/x/sys/unix"

// removeAt removes name and everything below it from the directory dirfd,
// with system calls relative to directories it opened and without following
// symlinks, so it removes nothing outside name.
func removeAt(dirfd int, name string) error {
	return removeTree(dirfd, name, make([]byte, direntBufSize))
}

// removeTree is removeAt with a getdents buffer, which each directory is
// done with before its entries are removed.
func removeTree(dirfd int, name string, buf []byte) error {
	err := unix.Unlinkat(dirfd, name, 0)
	// Linux gives EISDIR for a directory, POSIX EPERM.
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return err
	}
	fd, err := openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	// All names are read before any is removed: getdents64 may skip
	// entries of a directory that changes between calls.
	ents, err := readDir(fd, buf, nil)
	if err == nil {
		for _, e := range ents {
			if err = removeTree(fd, e.name, buf); err != nil {
				break
			}
		}
	}
	unix.Close(fd)
	if err != nil {
		return err
	}
	return unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
}
