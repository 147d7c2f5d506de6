package sandbox

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// This file holds the sandbox child's mount steps. They run in the child's
// own mount namespace, which belongs to its new user namespace: nothing
// mounted here is visible on the host, and everything goes away with the
// namespace when the builder's pid namespace dies. The one exception is
// newRootFS, which Run's process also calls: the tmpfs it makes is
// mounted nowhere until the child attaches it in its namespace, and it
// goes when its last descriptor is closed and that namespace is gone.

// shmOptions is nix.conf's default sandbox-shm-size.
const shmOptions = "size=50%"

// rootSize bounds the tmpfs of the sandbox's root, and with it what the
// builder may write to /tmp, the one writable directory on it: like
// /dev/shm, half the RAM. Nix's /tmp is on disk; on the tmpfs it costs
// memory (swappable, and charged to the builder's memory cgroup) rather
// than disk, and a builder that fills it gets ENOSPC earlier than on a
// big disk. Builders are given $TMPDIR, the build directory on disk, for
// their big files; what uses /tmp regardless tends to keep little there.
const rootSize = "50%"

// newRootFS makes the tmpfs of a sandbox's root (size rootSize, its root
// directory mode 0750 and, when gid >= 0, group gid), mounted nowhere yet,
// and returns its mount's descriptor, through which it can be filled and
// then attached (move_mount). Made by Run's process, as root, it belongs
// to the host's user namespace, where root is mapped: that is what lets
// the files that root makes in it (/etc…) be nobody's in the sandbox, as
// they would be on disk. nosuid and nodev, since nothing on it needs
// either (the devices are binds, with their own mount flags).
func newRootFS(gid int) (int, error) {
	fsfd, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, os.NewSyscallError("fsopen tmpfs", err)
	}
	defer unix.Close(fsfd)
	opts := [][2]string{{"size", rootSize}, {"mode", "0750"}}
	if gid >= 0 {
		opts = append(opts, [2]string{"gid", strconv.Itoa(gid)})
	}
	for _, kv := range opts {
		if err := unix.FsconfigSetString(fsfd, kv[0], kv[1]); err != nil {
			return -1, fmt.Errorf("tmpfs option %s=%s: %w", kv[0], kv[1], os.NewSyscallError("fsconfig", err))
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return -1, fmt.Errorf("creating a tmpfs: %w", os.NewSyscallError("fsconfig", err))
	}
	fd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV)
	if err != nil {
		return -1, os.NewSyscallError("fsmount tmpfs", err)
	}
	return fd, nil
}

// mountAPIWorks reports whether the kernel has the new mount API
// (open_tree, move_mount, fsopen, fsmount: Linux 5.2), which a root on a
// tmpfs needs; asRoot, whether it also lets us make a tmpfs (a seccomp
// filter of a container may refuse).
func mountAPIWorks(asRoot bool) bool {
	fd, err := unix.OpenTree(unix.AT_FDCWD, "/", unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return false
	}
	unix.Close(fd)
	if asRoot {
		fd, err := newRootFS(-1)
		if err != nil {
			return false
		}
		unix.Close(fd)
	}
	return true
}

// mountSandbox is step 1: it makes our mounts private, puts the root in
// place (see sandboxConfig.RootFS) with the store directory bound in it,
// and then does every bind mount of sb.Binds: the build directory, the
// inputs (read-only) and sandbox-paths. rootFD is the root tmpfs's mount
// that came with the configuration, or -1. It returns the root's path.
func mountSandbox(sb *sandboxConfig, rootFD int) (root string, err error) {
	// A mount on a shared subtree would propagate to its peers. Our
	// namespace belongs to a new user namespace, so the kernel already
	// turned the host's shared mounts into slaves; making everything
	// private is Nix's belt and braces.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return "", fmt.Errorf("making / private: %w", os.NewSyscallError("mount", err))
	}
	switch sb.RootFS {
	case rootDisk:
		// pivot_root needs a mount point.
		root = sb.Root
		if err := bind(root, root, unix.MS_BIND); err != nil {
			return "", err
		}
		if err := bind(sb.Store, root+sb.StoreDir, unix.MS_BIND); err != nil {
			return "", err
		}
	case rootTmpfs, rootTmpfsChild:
		if sb.RootFS == rootTmpfsChild {
			if rootFD, err = makeRootFS(sb.Skeleton); err != nil {
				return "", err
			}
		} else if rootFD < 0 {
			return "", errors.New("the root tmpfs did not come with the configuration")
		}
		defer unix.Close(rootFD)
		// The store directory is cloned first: the root hides it.
		store, err := unix.OpenTree(unix.AT_FDCWD, sb.Store, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
		if err != nil {
			return "", fmt.Errorf("cloning the mount of %s: %w", sb.Store, os.NewSyscallError("open_tree", err))
		}
		defer unix.Close(store)
		root = sb.Store
		if err := attach(rootFD, "tmpfs", root); err != nil {
			return "", err
		}
		if err := attach(store, sb.Store, root+sb.StoreDir); err != nil {
			return "", err
		}
	default:
		return "", fmt.Errorf("unknown root %q", sb.RootFS)
	}
	for _, b := range sb.Binds {
		target := root + b.Target
		if err := bind(b.Source, target, unix.MS_BIND|unix.MS_REC); err != nil {
			return "", err
		}
		if b.ReadOnly {
			if err := makeReadOnly(target); err != nil {
				return "", err
			}
		}
	}
	return root, nil
}

// makeRootFS makes the root tmpfs in the child, and skeleton on it. Made
// in the child's user namespace, it belongs to the build user: see
// rootTmpfsChild.
func makeRootFS(skeleton []skelEntry) (int, error) {
	fd, err := newRootFS(-1)
	if err != nil {
		return -1, err
	}
	if _, err := makeSkeleton(fd, "", skeleton, owner{}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// attach mounts the detached mount fd (what names it) on target.
func attach(fd int, what, target string) error {
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("mount %s on %s: %w", what, target, os.NewSyscallError("move_mount", err))
	}
	return nil
}

// mountDevAndProc is step 2: the host devices of the minimal /dev, a
// private devpts (so that the builder's ptys are its own), a tmpfs on
// /dev/shm (whatever the builder leaves there dies with the namespace) and
// a procfs of the new pid namespace.
func mountDevAndProc(sb *sandboxConfig, root string) error {
	for _, dev := range sb.DevNodes {
		if err := bind(dev, root+dev, unix.MS_BIND|unix.MS_REC); err != nil {
			return err
		}
	}
	if sb.DevPts {
		// ptmxmode=0666: /dev/ptmx, a symlink to pts/ptmx, must work for
		// the build user.
		if err := mountFS("devpts", root+"/dev/pts", "newinstance,ptmxmode=0666,mode=0620"); err != nil {
			return err
		}
	}
	if sb.DevShm {
		if err := mountFS("tmpfs", root+"/dev/shm", shmOptions); err != nil {
			return err
		}
	}
	return mountFS("proc", root+"/proc", "")
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
