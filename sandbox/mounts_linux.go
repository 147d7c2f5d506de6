package sandbox

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// This file holds the sandbox child's mount steps. They run in the child's
// own mount namespace, which belongs to its new user namespace: nothing
// mounted here is visible on the host, and everything goes away with the
// namespace when the builder's pid namespace dies.

// shmOptions is nix.conf's default sandbox-shm-size.
const shmOptions = "size=50%"

// mountSandbox is step 1: it makes our mounts private, makes the chroot a
// mount point (pivot_root needs one), bind-mounts the store onto itself as
// Nix 2.8 does, and then does every bind mount of sb.Binds: the build
// directory, the inputs (read-only) and sandbox-paths.
func mountSandbox(sb *sandboxConfig) error {
	// A mount on a shared subtree would propagate to its peers. Our
	// namespace belongs to a new user namespace, so the kernel already
	// turned the host's shared mounts into slaves; making everything
	// private is Nix's belt and braces.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making / private: %w", os.NewSyscallError("mount", err))
	}
	if err := bind(sb.Root, sb.Root, unix.MS_BIND); err != nil {
		return err
	}
	store := sb.Root + sb.StoreDir
	if err := bind(store, store, unix.MS_BIND); err != nil {
		return err
	}
	for _, b := range sb.Binds {
		target := sb.Root + b.Target
		if err := bind(b.Source, target, unix.MS_BIND|unix.MS_REC); err != nil {
			return err
		}
		if b.ReadOnly {
			if err := makeReadOnly(target); err != nil {
				return err
			}
		}
	}
	return nil
}

// mountDevAndProc is step 2: the host devices of the minimal /dev, a
// private devpts (so that the builder's ptys are its own), a tmpfs on
// /dev/shm (whatever the builder leaves there dies with the namespace) and
// a procfs of the new pid namespace.
func mountDevAndProc(sb *sandboxConfig) error {
	for _, dev := range sb.DevNodes {
		if err := bind(dev, sb.Root+dev, unix.MS_BIND|unix.MS_REC); err != nil {
			return err
		}
	}
	if sb.DevPts {
		// ptmxmode=0666: /dev/ptmx, a symlink to pts/ptmx, must work for
		// the build user.
		if err := mountFS("devpts", sb.Root+"/dev/pts", "newinstance,ptmxmode=0666,mode=0620"); err != nil {
			return err
		}
	}
	if sb.DevShm {
		if err := mountFS("tmpfs", sb.Root+"/dev/shm", shmOptions); err != nil {
			return err
		}
	}
	return mountFS("proc", sb.Root+"/proc", "")
}

// pivotRoot is step 3: root becomes "/", and the host's tree is detached.
// pivot_root(".", ".") stacks the old root on top of the new one at the
// same place, so unmounting "." drops it and no put_old directory is
// needed (runc's way; Nix 2.8 makes and removes "real-root").
func pivotRoot(root string) error {
	oldRoot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: "/", Err: err}
	}
	defer unix.Close(oldRoot)
	if err := unix.Chdir(root); err != nil {
		return &os.PathError{Op: "chdir", Path: root, Err: err}
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return &os.PathError{Op: "pivot_root", Path: root, Err: err}
	}
	// The kernel does not promise what "." is after pivot_root: name the
	// old root explicitly.
	if err := unix.Fchdir(oldRoot); err != nil {
		return os.NewSyscallError("fchdir", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detaching the old root: %w", os.NewSyscallError("umount2", err))
	}
	if err := unix.Chdir("/"); err != nil {
		return &os.PathError{Op: "chdir", Path: "/", Err: err}
	}
	return nil
}

// bind bind-mounts source on target.
func bind(source, target string, flags uintptr) error {
	if err := unix.Mount(source, target, "", flags, ""); err != nil {
		return fmt.Errorf("bind mount %s on %s: %w", source, target, err)
	}
	return nil
}

// mountFS mounts a new instance of the filesystem fstype on target.
func mountFS(fstype, target, data string) error {
	if err := unix.Mount("none", target, fstype, 0, data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", fstype, target, err)
	}
	return nil
}

// makeReadOnly makes the bind mount at target, and any mount below it,
// read-only. mount_setattr (Linux 5.12) changes just that flag; the older
// remount must repeat the flags the kernel locked on the source mount
// (nosuid, noexec, atime handling…), or a user namespace may not remount.
func makeReadOnly(target string) error {
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	err := unix.MountSetattr(unix.AT_FDCWD, target, unix.AT_RECURSIVE, &attr)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.ENOSYS) {
		return fmt.Errorf("making %s read-only: %w", target, os.NewSyscallError("mount_setattr", err))
	}
	var st unix.Statfs_t
	if err := unix.Statfs(target, &st); err != nil {
		return &os.PathError{Op: "statfs", Path: target, Err: err}
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY)
	for _, f := range [...]struct{ st, ms uintptr }{
		{unix.ST_NOSUID, unix.MS_NOSUID},
		{unix.ST_NODEV, unix.MS_NODEV},
		{unix.ST_NOEXEC, unix.MS_NOEXEC},
		{unix.ST_NOATIME, unix.MS_NOATIME},
		{unix.ST_NODIRATIME, unix.MS_NODIRATIME},
		{unix.ST_RELATIME, unix.MS_RELATIME},
	} {
		if uintptr(st.Flags)&f.st != 0 {
			flags |= f.ms
		}
	}
	if err := unix.Mount("", target, "", flags, ""); err != nil {
		return fmt.Errorf("making %s read-only: %w", target, os.NewSyscallError("mount", err))
	}
	return nil
}
