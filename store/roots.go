package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// rootsSubdir holds the GC roots, as Nix's /nix/var/nix/gcroots: symlinks
// to store paths, or (in auto/) symlinks to symlinks elsewhere, such as a
// `result` link, whose target is the root while the link exists.
const rootsSubdir = "gcroots"

// RootsDir is the directory of the GC roots.
func (s *Store) RootsDir() string { return filepath.Join(s.stateDir, rootsSubdir) }

// AddRoot makes link a symlink to p and registers it as an indirect root:
// p stays alive as long as link exists and points into the store (Nix's
// --add-root). An existing symlink at link is replaced; anything else
// there is an error.
func (s *Store) AddRoot(link string, p Path) error {
	abs, err := filepath.Abs(link)
	if err != nil {
		return err
	}
	if fi, err := os.Lstat(abs); err == nil && fi.Mode()&fs.ModeSymlink == 0 {
		return fmt.Errorf("cannot add root '%s': it exists and is not a symlink", abs)
	}
	tmp := abs + ".tmp-storefs"
	os.Remove(tmp)
	if err := os.Symlink(string(p), tmp); err != nil {
		return fmt.Errorf("adding root '%s': %w", abs, err)
	}
	if err := os.Rename(tmp, abs); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("adding root '%s': %w", abs, err)
	}
	auto := filepath.Join(s.RootsDir(), "auto")
	if err := os.MkdirAll(auto, 0o755); err != nil {
		return fmt.Errorf("adding root '%s': %w", abs, err)
	}
	name := filepath.Join(auto, HashString(SHA256, abs).Base32()[:32])
	os.Remove(name)
	if err := os.Symlink(abs, name); err != nil {
		return fmt.Errorf("registering indirect root '%s': %w", abs, err)
	}
	return nil
}

// Roots maps each store path that a root keeps alive to the root links
// that do. It reads links textually and never follows one into the store
// directory (which may be our own mount). Indirect roots whose link is
// gone are removed, as Nix does.
func (s *Store) Roots() (map[Path][]string, error) {
	roots := map[Path][]string{}
	err := filepath.WalkDir(s.RootsDir(), func(name string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		p, holder, ok := s.resolveRoot(name)
		switch {
		case ok:
			roots[p] = append(roots[p], holder)
		case strings.HasPrefix(name, filepath.Join(s.RootsDir(), "auto")+"/") && holder == "":
			s.logger.Debug("removing stale indirect root", "root", name)
			os.Remove(name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading GC roots: %w", err)
	}
	for _, links := range roots {
		sort.Strings(links)
	}
	return roots, nil
}

// resolveRoot follows a root symlink chain outside the store until it
// names a store path. holder is the last link outside the roots
// directory (or the root itself); it is "" when the chain is broken.
func (s *Store) resolveRoot(name string) (p Path, holder string, ok bool) {
	cur := name
	holder = name
	for i := 0; i < 40; i++ {
		target, err := os.Readlink(cur)
		if err != nil {
			return "", "", false
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(cur), target)
		}
		if strings.HasPrefix(target, string(s.Dir)+"/") {
			p, err := s.Dir.ToStorePath(target)
			if err != nil {
				return "", holder, false
			}
			return p, holder, true
		}
		fi, err := os.Lstat(target)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			return "", "", false
		}
		cur, holder = target, target
	}
	return "", "", false
}

// TempRoots keeps paths alive while this process uses them: the inputs
// and outputs of running goals, paths being looked up in the mount, what
// a command works on. Only the process holding the store can collect
// garbage, so temporary roots live in its memory.
type TempRoots struct {
	mu    sync.Mutex
	count map[Path]int
	// gc is held by the collector while it checks a batch of dead paths
	// against the temporary roots and makes the rest invalid; adding a
	// root waits for it, so a root added during a collection is either
	// seen by that check or added after the batch is invalid (and the
	// caller then finds the path invalid and realises it again).
	gc sync.RWMutex
}

// Add keeps ps alive until release is called.
func (t *TempRoots) Add(ps ...Path) (release func()) {
	t.gc.RLock()
	defer t.gc.RUnlock()
	t.mu.Lock()
	if t.count == nil {
		t.count = map[Path]int{}
	}
	for _, p := range ps {
		t.count[p]++
	}
	t.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			t.mu.Lock()
			for _, p := range ps {
				if t.count[p]--; t.count[p] <= 0 {
					delete(t.count, p)
				}
			}
			t.mu.Unlock()
		})
	}
}

func (t *TempRoots) list() []Path {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Path, 0, len(t.count))
	for p := range t.count {
		out = append(out, p)
	}
	return out
}
