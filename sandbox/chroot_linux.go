package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The files Nix 2.8 writes into the sandbox's /etc (sandboxUID and
// sandboxGID are 1000 and 100). The build user's entries make "id" and
// "whoami" work; nobody exists for Samba-in-QEMU. Root's and the build
// user's home is the build directory.
const (
	etcPasswd = "root:x:0:0:Nix build user:/build:/noshell\n" +
		"nixbld:x:1000:100:Nix build user:/build:/noshell\n" +
		"nobody:x:65534:65534:Nobody:/:/noshell\n"
	etcGroup = "root:x:0:\n" +
		"nixbld:!:100:\n" +
		"nogroup:x:65534:\n"
	etcHosts = "127.0.0.1 localhost\n::1 localhost\n"
	// etcNsswitch is for fixed-output builds, which see the host's
	// resolv.conf, services and hosts: only files and DNS are consulted,
	// and only for hosts and services, to limit what leaks in.
	etcNsswitch = "hosts: files dns\nservices: files\n"
)

// hostNetworkFiles are bound into fixed-output builds when the host has
// them (Nix 2.8 skips missing ones).
var hostNetworkFiles = [...]string{"/etc/resolv.conf", "/etc/services", "/etc/hosts"}

// devNodes are the host devices of the minimal /dev, in Nix 2.8's order;
// /dev/kvm is added after /dev/full when the kvm feature is on.
var devNodes = [...]string{"/dev/full", "/dev/null", "/dev/random", "/dev/tty", "/dev/urandom", "/dev/zero"}

// owner says who owns what Run creates: the build user (uid, gid), and
// whether we may chown at all (only as root).
type owner struct {
	uid, gid int
	chown    bool
}

// makeBuildDir creates the build directory in s.TempDir, mode 0700 and
// owned by the build user, and writes s.Files into it, as Nix's
// startBuilder and initTmpDir do.
func makeBuildDir(s *Spec, o owner) (dir string, err error) {
	dir, err = os.MkdirTemp(s.TempDir, tempPattern("nix-build-", s.Name))
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
			dir = ""
		}
	}()
	if o.chown {
		if err := os.Lchown(dir, o.uid, o.gid); err != nil {
			return "", err
		}
	}
	for name, data := range s.Files {
		if err := writeNewFile(filepath.Join(dir, name), data, 0o644, o); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// chrootPlan is what prepareChroot made: the sandbox's store directory
// and root, and the mounts the child still has to do.
type chrootPlan struct {
	store  string   // host directory bound at the store directory
	root   string   // the root on disk (rootDisk), else ""
	rootFS *os.File // the root tmpfs's mount (rootTmpfs), else nil
	cfg    sandboxConfig
}

// undo closes p.rootFS and removes what prepareChroot made on disk, for
// a prepareChroot that failed: nothing is mounted on it yet.
func (p *chrootPlan) undo() {
	if p.rootFS != nil {
		p.rootFS.Close()
	}
	if p.root != "" {
		os.RemoveAll(p.root)
	}
	if p.store != "" {
		os.RemoveAll(p.store)
	}
}

// prepareChroot makes what the sandbox's tree needs besides its mounts:
// the store directory in s.TempDir, with the mount points of the inputs
// and the hard links of file inputs, where the builder creates its
// outputs; and the root, with /etc, /tmp, /dev and the mount points of
// everything else, made where kind says. The child then only mounts, in
// the order of cfg.Binds. Nix 2.8 makes the whole tree on disk, except
// /dev, which its child makes. extra are more read-only binds of files
// (what the builtin stage needs, see builtinStageBinds). On error it
// removes what it made; the error is a *SetupError.
func prepareChroot(s *Spec, buildDir string, o owner, kind rootKind, kvm bool, extra []bindMount) (*chrootPlan, error) {
	// First the list, which reads the host but changes nothing.
	root, store := skeleton{}, skeleton{top: s.StoreDir}
	at := func(p string) (*skeleton, string) {
		if rest, ok := strings.CutPrefix(p, s.StoreDir+"/"); ok {
			return &store, "/" + rest
		}
		return &root, p
	}
	dirAll := func(p string) { sk, q := at(p); sk.dirAll(q) }
	mountDir := func(p string) { sk, q := at(p); sk.mountDir(q) }
	mountFile := func(p string) { sk, q := at(p); sk.mountFile(q) }
	p := &chrootPlan{cfg: sandboxConfig{
		RootFS:         kind,
		StoreDir:       s.StoreDir,
		PrivateNetwork: !s.FixedOutput,
	}}

	// A world-writable /tmp; builders should use $TMPDIR, but many don't.
	root.dir("/tmp", 0o1777, false)
	root.dir("/etc", 0o755, false)
	root.file("/etc/passwd", etcPasswd)
	root.file("/etc/group", etcGroup)
	if s.FixedOutput {
		root.file("/etc/nsswitch.conf", etcNsswitch)
	} else {
		root.file("/etc/hosts", etcHosts)
	}
	root.mountDir("/proc")
	// The store directory's own mode is its host directory's (below).
	root.dirAll(path.Dir(s.StoreDir))
	root.mountDir(s.StoreDir)

	binds := []bindMount{{Source: buildDir, Target: sandboxBuildDir}}
	root.mountDir(sandboxBuildDir)

	outputs := make(map[string]bool, len(s.Outputs))
	for _, out := range s.Outputs {
		outputs[out] = true
	}
	for _, logical := range sortedKeys(s.Inputs) {
		if outputs[logical] {
			continue // being rebuilt: the builder creates it afresh
		}
		host := s.Inputs[logical]
		st, err := os.Lstat(host)
		if err != nil {
			return nil, &SetupError{Step: "inputs", Err: fmt.Errorf("input %s: %w", logical, err)}
		}
		name := "/" + path.Base(logical)
		switch {
		case st.IsDir():
			store.mountDir(name)
		case st.Mode()&fs.ModeSymlink != 0:
			// A bind mount would follow the link on the host; a copy
			// of the link resolves inside the sandbox, as Nix's hard
			// link to it does.
			target, err := os.Readlink(host)
			if err != nil {
				return nil, &SetupError{Step: "inputs", Err: fmt.Errorf("input %s: %w", logical, err)}
			}
			store.symlink(target, name)
			continue
		case st.Mode().IsRegular():
			// A hard link, as Nix makes: one syscall here instead of a
			// mount point, a bind and a read-only remount in the child. The
			// file is root's and read-only, in a sticky directory, so the
			// builder can neither change nor remove it. Where it cannot
			// be linked, it is bound (see makeSkeleton).
			store.link(host, name)
			continue
		default:
			return nil, &SetupError{Step: "inputs", Err: fmt.Errorf("input %s: unsupported file type %v", logical, st.Mode().Type())}
		}
		binds = append(binds, bindMount{Source: host, Target: logical, ReadOnly: true})
	}

	devFromHost, devPtsFromHost := false, false
	for _, b := range s.SandboxPaths {
		target := path.Clean(b.Target)
		if b.Source == "/proc" {
			continue // Nix ignores it: the sandbox has its own /proc
		}
		st, err := os.Stat(b.Source)
		if err != nil {
			if b.Optional && errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, &SetupError{Step: "sandbox-paths", Err: err}
		}
		dirAll(path.Dir(target))
		if st.IsDir() {
			mountDir(target)
		} else {
			mountFile(target)
		}
		binds = append(binds, bindMount{Source: b.Source, Target: target})
		devFromHost = devFromHost || target == "/dev"
		devPtsFromHost = devPtsFromHost || target == "/dev/pts"
	}

	if s.FixedOutput {
		for _, f := range hostNetworkFiles {
			if _, err := os.Stat(f); err == nil {
				root.mountFile(f)
				binds = append(binds, bindMount{Source: f, Target: f})
			}
		}
	}

	for _, b := range extra {
		dirAll(path.Dir(b.Target))
		mountFile(b.Target)
		binds = append(binds, b)
	}

	if !devFromHost {
		// A nearly empty /dev: a plain directory with a few device binds,
		// not a devtmpfs.
		root.dir("/dev", 0o755, false)
		root.mountDir("/dev/shm")
		root.mountDir("/dev/pts")
		for i, dev := range devNodes {
			p.cfg.DevNodes = append(p.cfg.DevNodes, dev)
			if i == 0 && kvm && exists("/dev/kvm") {
				p.cfg.DevNodes = append(p.cfg.DevNodes, "/dev/kvm")
			}
		}
		for _, dev := range p.cfg.DevNodes {
			root.mountFile(dev)
		}
		root.symlink("/proc/self/fd", "/dev/fd")
		root.symlink("/proc/self/fd/0", "/dev/stdin")
		root.symlink("/proc/self/fd/1", "/dev/stdout")
		root.symlink("/proc/self/fd/2", "/dev/stderr")
		if !devPtsFromHost {
			p.cfg.DevPts = true
			root.symlink("/dev/pts/ptmx", "/dev/ptmx")
		}
	}
	p.cfg.DevShm = exists("/dev/shm")
	if err := errors.Join(root.err, store.err); err != nil {
		return nil, &SetupError{Step: "chroot", Err: err}
	}

	// Then the making.
	unlinked, err := p.makeStore(s, o, store.entries)
	if err == nil {
		err = p.makeRoot(s, o, root.entries)
	}
	if err != nil {
		p.undo()
		return nil, &SetupError{Step: "chroot", Err: err}
	}
	for _, name := range unlinked {
		logical := s.StoreDir + "/" + name
		binds = append(binds, bindMount{Source: s.Inputs[logical], Target: logical, ReadOnly: true})
	}

	// Mount order: a parent before anything below it.
	sort.SliceStable(binds, func(i, j int) bool { return binds[i].Target < binds[j].Target })
	p.cfg.Binds = binds
	return p, nil
}

// makeStore makes the host directory of the sandbox's store directory in
// s.TempDir, and entries in it. The store directory is writable by the
// build group so that the builder can create its outputs there; the
// sticky bit keeps it from removing inputs.
func (p *chrootPlan) makeStore(s *Spec, o owner, entries []skelEntry) (unlinked []string, err error) {
	p.store, err = os.MkdirTemp(s.TempDir, tempPattern("nix-store-", s.Name))
	if err != nil {
		return nil, err
	}
	p.cfg.Store = p.store
	if err := chmodChown(p.store, 0o1775, o); err != nil {
		return nil, err
	}
	return makeSkeletonIn(p.store, s.StoreDir, entries, o)
}

// makeRoot makes the root of the sandbox, with entries in it, where
// p.cfg.RootFS says; for rootTmpfsChild, it passes them on to the child.
// The root is readable by the build group only, like Nix's.
func (p *chrootPlan) makeRoot(s *Spec, o owner, entries []skelEntry) error {
	switch p.cfg.RootFS {
	case rootTmpfsChild:
		p.cfg.Skeleton = entries
		return nil
	case rootDisk:
		root, err := os.MkdirTemp(s.TempDir, tempPattern("nix-chroot-", s.Name))
		if err != nil {
			return err
		}
		p.root, p.cfg.Root = root, root
		if err := chmodChown(root, 0o750, o); err != nil {
			return err
		}
		_, err = makeSkeletonIn(root, "", entries, o)
		return err
	}
	gid := -1
	if o.chown {
		gid = o.gid
	}
	fd, err := newRootFS(gid)
	if err != nil {
		return err
	}
	p.rootFS = os.NewFile(uintptr(fd), "sandbox-root")
	_, err = makeSkeleton(fd, "", entries, o)
	return err
}

// chmodChown gives the directory dir exactly mode perm (os.Chmod would
// drop the sticky bit), and root and o's group when o.chown.
func chmodChown(dir string, perm uint32, o owner) error {
	if err := unix.Chmod(dir, perm); err != nil {
		return &fs.PathError{Op: "chmod", Path: dir, Err: err}
	}
	if o.chown {
		if err := unix.Lchown(dir, 0, o.gid); err != nil {
			return &fs.PathError{Op: "chown", Path: dir, Err: err}
		}
	}
	return nil
}

// makeSkeletonIn makes entries in the host directory dir, which is top in
// the sandbox (see makeSkeleton).
func makeSkeletonIn(dir, top string, entries []skelEntry, o owner) ([]string, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	return makeSkeleton(fd, top, entries, o)
}

// writeNewFile creates name, which must not exist, with exactly mode perm,
// owned by o when o.chown.
func writeNewFile(name string, data []byte, perm uint32, o owner) error {
	fd, err := syscall.Open(name, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_CLOEXEC, perm)
	if err != nil {
		return &fs.PathError{Op: "open", Path: name, Err: err}
	}
	defer syscall.Close(fd)
	for len(data) > 0 {
		n, err := syscall.Write(fd, data)
		if err != nil {
			return &fs.PathError{Op: "write", Path: name, Err: err}
		}
		data = data[n:]
	}
	// Exactly perm, whatever the umask.
	if err := syscall.Fchmod(fd, perm); err != nil {
		return &fs.PathError{Op: "chmod", Path: name, Err: err}
	}
	if o.chown {
		if err := syscall.Fchown(fd, o.uid, o.gid); err != nil {
			return &fs.PathError{Op: "chown", Path: name, Err: err}
		}
	}
	return nil
}

// tempPattern is the os.MkdirTemp pattern for a directory of the build of
// name ("*" would tell MkdirTemp where to put the random part).
func tempPattern(prefix, name string) string {
	return prefix + strings.ReplaceAll(name, "*", "_") + "-"
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
