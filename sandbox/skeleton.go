package sandbox

import (
	"errors"
	"io/fs"
	"path"
	"strings"
)

// This file lists skeletons: the directories, files, symlinks and empty
// mount points of the sandbox's tree that exist before anything is
// mounted. prepareChroot lists them first, touching no filesystem, and the
// list is then made wherever that part of the tree lives: the root on a
// tmpfs of the build's own (filled by Run's process, or by the child when
// only the child can make one) or in a directory on disk, and the store
// directory in its host directory. Every call works relative to one
// directory descriptor, so that a tmpfs that is mounted nowhere yet can be
// filled, and a path is made once, in the order it was listed
// (skeleton_linux.go makes them).

// Kinds of skelEntry.
const (
	skelDir       = "dir"       // a directory of exactly Mode, root's
	skelFile      = "file"      // a file holding Data, mode 0644, root's
	skelMountDir  = "mountdir"  // an empty directory to mount on
	skelMountFile = "mountfile" // an empty file to mount on
	skelSymlink   = "symlink"   // a symlink to Data
	skelLink      = "link"      // a hard link to the host file Data
)

// skelEntry is one thing of a skeleton. The child gets a skeleton in its
// configuration when it makes its root itself, hence the JSON.
type skelEntry struct {
	Kind string `json:"kind"`
	// Path is relative to the skeleton's top, without a leading slash.
	Path string `json:"path"`
	// Mode is a skelDir's permission bits, sticky bit included (set
	// exactly, whatever the umask).
	Mode uint32 `json:"mode,omitempty"`
	// Group gives a skelDir to the build group (when we may chown).
	Group bool `json:"group,omitempty"`
	// Data is a skelFile's contents, a skelSymlink's target, a skelLink's
	// host path.
	Data string `json:"data,omitempty"`
}

// skeleton lists what to make below one directory, each path once, in
// the order given: a parent before its children. It keeps the first
// conflict (a file or symlink listed twice) as err, so that
// prepareChroot reads as a list.
type skeleton struct {
	top     string // what the skeleton's top is in the sandbox, for errors
	entries []skelEntry
	index   map[string]int // by Path, into entries
	err     error
}

// rel turns p, absolute below the skeleton's top, into an entry's Path.
func rel(p string) string { return strings.TrimPrefix(p, "/") }

// add lists e unless its path is listed, and reports whether it was. A
// path below a listed symlink is a conflict: making it would follow the
// symlink, out of the sandbox's tree for an absolute one.
func (s *skeleton) add(e skelEntry) (listed bool) {
	if s.index == nil {
		s.index = make(map[string]int)
	}
	if _, ok := s.index[e.Path]; ok {
		return true
	}
	for d := path.Dir(e.Path); d != "."; d = path.Dir(d) {
		if i, ok := s.index[d]; ok && s.entries[i].Kind == skelSymlink {
			s.fail(e.Path, errBelowSymlink)
			return true
		}
	}
	s.index[e.Path] = len(s.entries)
	s.entries = append(s.entries, e)
	return false
}

// errBelowSymlink is a skeleton's conflict of a path below a symlink.
var errBelowSymlink = errors.New("a parent directory is a symlink")

// fail keeps the conflict err at Path p as s.err, unless there is one.
func (s *skeleton) fail(p string, err error) {
	if s.err == nil {
		s.err = &fs.PathError{Op: "create", Path: s.top + "/" + p, Err: err}
	}
}

// dir lists the directory p with exactly mode perm; if p is listed
// already (as the parent of a sandbox path), it gets that mode.
func (s *skeleton) dir(p string, perm uint32, group bool) {
	e := skelEntry{Kind: skelDir, Path: rel(p), Mode: perm, Group: group}
	if s.add(e) {
		i, ok := s.index[e.Path]
		if !ok {
			return // a conflict
		}
		if k := s.entries[i].Kind; k != skelDir && k != skelMountDir {
			s.fail(e.Path, fs.ErrExist)
			return
		}
		s.entries[i] = e
	}
}

// dirAll lists p and its parents that are not listed, mode 0755.
func (s *skeleton) dirAll(p string) {
	if p == "/" || p == "." || p == "" {
		return
	}
	if _, ok := s.index[rel(p)]; ok {
		return
	}
	s.dirAll(path.Dir(p))
	s.dir(p, 0o755, false)
}

// file lists the file p holding data, mode 0644, owned by root.
func (s *skeleton) file(p, data string) {
	if s.add(skelEntry{Kind: skelFile, Path: rel(p), Data: data}) {
		s.fail(rel(p), fs.ErrExist)
	}
}

// mountDir lists the directory p to mount on, unless p is listed.
func (s *skeleton) mountDir(p string) { s.add(skelEntry{Kind: skelMountDir, Path: rel(p)}) }

// mountFile lists the empty file p to mount on, unless p is listed.
func (s *skeleton) mountFile(p string) { s.add(skelEntry{Kind: skelMountFile, Path: rel(p)}) }

// symlink lists the symlink p to target.
func (s *skeleton) symlink(target, p string) {
	if s.add(skelEntry{Kind: skelSymlink, Path: rel(p), Data: target}) {
		s.fail(rel(p), fs.ErrExist)
	}
}

// link lists p as a hard link to the host file host.
func (s *skeleton) link(host, p string) {
	if s.add(skelEntry{Kind: skelLink, Path: rel(p), Data: host}) {
		s.fail(rel(p), fs.ErrExist)
	}
}
