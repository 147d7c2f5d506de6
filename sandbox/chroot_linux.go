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

// chrootPlan is what prepareChroot made: the chroot and the mounts the
// child still has to do in it.
type chrootPlan struct {
	root string
	cfg  sandboxConfig
}

// prepareChroot builds the sandbox's root directory in s.TempDir with
// every file, directory, symlink and mount point the child needs, so that
// the child only mounts. Nix 2.8 does the same split, except that it
// creates /dev in the child. extra are more read-only binds of files (what
// the builtin stage needs, see builtinStageBinds). On error it removes what
// it made; the error is a *SetupError.
func prepareChroot(s *Spec, buildDir string, o owner, kvm bool, extra []bindMount) (p *chrootPlan, err error) {
	root, err := os.MkdirTemp(s.TempDir, tempPattern("nix-chroot-", s.Name))
	if err != nil {
		return nil, &SetupError{Step: "chroot", Err: err}
	}
	defer func() {
		if err != nil {
			os.RemoveAll(root) // nothing is mounted in it yet
		}
	}()
	c := &chrootMaker{root: root, o: o}
	p = &chrootPlan{root: root, cfg: sandboxConfig{
		Root:           root,
		StoreDir:       s.StoreDir,
		PrivateNetwork: !s.FixedOutput,
	}}

	// The root is readable by the build group only, like Nix's.
	c.chmod("", 0o750)
	c.chownGroup("")
	// A world-writable /tmp; builders should use $TMPDIR, but many don't.
	// (os.FileMode's sticky bit is os.ModeSticky, not 0o1000, which
	// os.Chmod would silently drop.)
	c.dir("/tmp", 0o777|os.ModeSticky)
	c.dir("/etc", 0o755)
	c.file("/etc/passwd", etcPasswd)
	c.file("/etc/group", etcGroup)
	if s.FixedOutput {
		c.file("/etc/nsswitch.conf", etcNsswitch)
	} else {
		c.file("/etc/hosts", etcHosts)
	}
	c.mountDir("/proc")
	// The store is writable by the build group so the builder can create
	// its outputs there; the sticky bit keeps it from removing inputs.
	c.dirAll(s.StoreDir)
	c.chmod(s.StoreDir, 0o775|os.ModeSticky)
	c.chownGroup(s.StoreDir)
	if c.err != nil {
		return nil, &SetupError{Step: "chroot", Err: c.err}
	}

	binds := []bindMount{{Source: buildDir, Target: sandboxBuildDir}}
	c.mountDir(sandboxBuildDir)

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
		switch {
		case st.IsDir():
			c.mountDir(logical)
		case st.Mode()&fs.ModeSymlink != 0:
			// A bind mount would follow the link on the host; a copy
			// of the link resolves inside the sandbox, as Nix's hard
			// link to it does.
			target, err := os.Readlink(host)
			if err != nil {
				return nil, &SetupError{Step: "inputs", Err: fmt.Errorf("input %s: %w", logical, err)}
			}
			c.symlink(target, logical)
			continue
		case st.Mode().IsRegular():
			// A hard link, as Nix makes: one syscall here instead of a
			// mount point, a bind and a read-only remount in the child. The
			// file is root's and read-only, in a sticky directory, so the
			// builder can neither change nor remove it.
			if c.err == nil && os.Link(host, c.path(logical)) == nil {
				continue
			}
			c.mountFile(logical)
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
		if st.IsDir() {
			c.dirAll(path.Dir(target))
			c.mountDir(target)
		} else {
			c.dirAll(path.Dir(target))
			c.mountFile(target)
		}
		binds = append(binds, bindMount{Source: b.Source, Target: target})
		devFromHost = devFromHost || target == "/dev"
		devPtsFromHost = devPtsFromHost || target == "/dev/pts"
	}

	if s.FixedOutput {
		for _, f := range hostNetworkFiles {
			if _, err := os.Stat(f); err == nil {
				c.mountFile(f)
				binds = append(binds, bindMount{Source: f, Target: f})
			}
		}
	}

	for _, b := range extra {
		c.dirAll(path.Dir(b.Target))
		c.mountFile(b.Target)
		binds = append(binds, b)
	}

	if !devFromHost {
		// A nearly empty /dev: a plain directory with a few device binds,
		// not a devtmpfs.
		c.dir("/dev", 0o755)
		c.mountDir("/dev/shm")
		c.mountDir("/dev/pts")
		for i, dev := range devNodes {
			p.cfg.DevNodes = append(p.cfg.DevNodes, dev)
			if i == 0 && kvm && exists("/dev/kvm") {
				p.cfg.DevNodes = append(p.cfg.DevNodes, "/dev/kvm")
			}
		}
		for _, dev := range p.cfg.DevNodes {
			c.mountFile(dev)
		}
		c.symlink("/proc/self/fd", "/dev/fd")
		c.symlink("/proc/self/fd/0", "/dev/stdin")
		c.symlink("/proc/self/fd/1", "/dev/stdout")
		c.symlink("/proc/self/fd/2", "/dev/stderr")
		if !devPtsFromHost {
			p.cfg.DevPts = true
			c.symlink("/dev/pts/ptmx", "/dev/ptmx")
		}
	}
	p.cfg.DevShm = exists("/dev/shm")
	if c.err != nil {
		return nil, &SetupError{Step: "chroot", Err: c.err}
	}

	// Mount order: a parent before anything below it.
	sort.SliceStable(binds, func(i, j int) bool { return binds[i].Target < binds[j].Target })
	p.cfg.Binds = binds
	return p, nil
}

// chrootMaker creates files below root and keeps the first error, so that
// prepareChroot reads as a list. What the builder sees gets its mode set
// exactly, whatever our umask; mount points, which the mounts hide, keep
// whatever mkdir and open give them.
type chrootMaker struct {
	root        string
	o           owner
	placeholder string // the first file made by mountFile
	err         error
}

func (c *chrootMaker) path(p string) string { return c.root + p }

func (c *chrootMaker) fail(err error) {
	if c.err == nil && err != nil {
		c.err = err
	}
}

// dir creates the directory p, unless it exists (as a parent of a
// sandbox path), and gives it mode perm.
func (c *chrootMaker) dir(p string, perm os.FileMode) {
	if c.err != nil {
		return
	}
	if err := os.Mkdir(c.path(p), perm); !errors.Is(err, fs.ErrExist) {
		c.fail(err)
	}
	c.chmod(p, perm)
}

// dirAll creates p and its missing parents, mode 0755.
func (c *chrootMaker) dirAll(p string) {
	if c.err != nil || p == "/" {
		return
	}
	if _, err := os.Lstat(c.path(p)); err == nil {
		return
	}
	c.dirAll(path.Dir(p))
	c.dir(p, 0o755)
}

func (c *chrootMaker) chmod(p string, perm os.FileMode) {
	if c.err == nil {
		c.fail(os.Chmod(c.path(p), perm))
	}
}

// chownGroup gives p to root and the build group.
func (c *chrootMaker) chownGroup(p string) {
	if c.err == nil && c.o.chown {
		c.fail(os.Lchown(c.path(p), 0, c.o.gid))
	}
}

func (c *chrootMaker) symlink(target, p string) {
	if c.err == nil {
		c.fail(os.Symlink(target, c.path(p)))
	}
}

// file creates the file p with data, mode 0644, owned by root.
func (c *chrootMaker) file(p, data string) {
	if c.err == nil {
		c.fail(writeNewFile(c.path(p), []byte(data), 0o644, owner{}))
	}
}

// mountDir creates the directory p to mount on, unless it exists.
func (c *chrootMaker) mountDir(p string) {
	if c.err != nil {
		return
	}
	if err := os.Mkdir(c.path(p), 0o755); !errors.Is(err, fs.ErrExist) {
		c.fail(err)
	}
}

// mountFile creates the empty file p to mount on, unless it exists. All of
// them are hard links of the first: a link is several times cheaper than a
// new inode, and what is mounted on them hides them anyway.
func (c *chrootMaker) mountFile(p string) {
	if c.err != nil {
		return
	}
	var err error
	if c.placeholder == "" {
		var fd int
		fd, err = syscall.Open(c.path(p), syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_CLOEXEC, 0o644)
		if err == nil {
			syscall.Close(fd)
			c.placeholder = c.path(p)
		}
	} else {
		err = syscall.Link(c.placeholder, c.path(p))
	}
	if err != nil && err != syscall.EEXIST {
		c.fail(&fs.PathError{Op: "create", Path: c.path(p), Err: err})
	}
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
