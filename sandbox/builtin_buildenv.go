//go:build linux

package sandbox

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// firstPropagatedPriority is the priority of the first package that
// another one propagates (nix-support/propagated-user-env-packages); each
// further one gets the next number. They come after every package the
// user chose, whose priorities are usually below 1000, so they lose
// collisions with them.
const firstPropagatedPriority = 1000

// envSkipped are the path suffixes buildenv never links: useless in a
// profile, or colliding between almost all packages (each Perl module
// brings a perllocal.pod, each Info manual an info/dir).
var envSkipped = [...]string{
	"/propagated-build-inputs",
	"/nix-support",
	"/perllocal.pod",
	"/info/dir",
	"/log",
	"/manifest.nix",
	"/manifest.json",
}

// envPackage is one output listed in the derivations attribute.
type envPackage struct {
	path     string
	active   bool
	priority int
}

// buildenv is builtin:buildenv (Nix 2.8's builtinBuildenv), which
// nix-env uses to make a user environment: $out becomes a tree of
// symlinks into the active packages, with $out/manifest.nix pointing to
// the manifest attribute.
//
// The derivations attribute lists the packages as whitespace-separated
// groups "active priority n path1 … pathn"; a package is active unless
// active is "false". Packages are linked in order of priority (lower
// numbers first) and path; where two provide the same file, the lower
// priority number wins, and equal priorities are a collision. Then the
// packages they propagate are linked, with priorities from 1000 up.
// Warnings go to log.
func buildenv(env map[string]string, log io.Writer) error {
	out, err := attr(env, "out")
	if err != nil {
		return err
	}
	list, err := attr(env, "derivations")
	if err != nil {
		return err
	}
	manifest, err := attr(env, "manifest")
	if err != nil {
		return err
	}
	pkgs, err := parseEnvPackages(list)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	// Lower priorities first, so that the winner of a collision is
	// usually linked first and not replaced later.
	sort.SliceStable(pkgs, func(i, j int) bool {
		if pkgs[i].priority != pkgs[j].priority {
			return pkgs[i].priority < pkgs[j].priority
		}
		return pkgs[i].path < pkgs[j].path
	})
	e := &envBuilder{
		out:        out,
		log:        log,
		priorities: map[string]int{},
		done:       map[string]bool{},
		postponed:  map[string]bool{},
	}
	for _, p := range pkgs {
		if p.active {
			if err := e.addPackage(p.path, p.priority); err != nil {
				return err
			}
		}
	}
	// Propagated packages, round by round (they may propagate more), in
	// path order within a round.
	priority := firstPropagatedPriority
	for len(e.postponed) > 0 {
		round := make([]string, 0, len(e.postponed))
		for p := range e.postponed {
			round = append(round, p)
		}
		sort.Strings(round)
		e.postponed = map[string]bool{}
		for _, p := range round {
			if err := e.addPackage(p, priority); err != nil {
				return err
			}
			priority++
		}
	}
	return os.Symlink(manifest, filepath.Join(out, "manifest.nix"))
}

// parseEnvPackages reads the derivations attribute.
func parseEnvPackages(list string) ([]envPackage, error) {
	toks := strings.Fields(list)
	var pkgs []envPackage
	for len(toks) > 0 {
		if len(toks) < 3 {
			return nil, fmt.Errorf("attribute 'derivations' ends in an incomplete package: %q", strings.Join(toks, " "))
		}
		active := toks[0] != "false"
		priority, err := strconv.Atoi(toks[1])
		if err != nil {
			return nil, fmt.Errorf("attribute 'derivations': invalid priority '%s'", toks[1])
		}
		n, err := strconv.Atoi(toks[2])
		if err != nil || n < 0 || n > len(toks)-3 {
			return nil, fmt.Errorf("attribute 'derivations': invalid number of outputs '%s'", toks[2])
		}
		for _, p := range toks[3 : 3+n] {
			pkgs = append(pkgs, envPackage{path: p, active: active, priority: priority})
		}
		toks = toks[3+n:]
	}
	return pkgs, nil
}

// envBuilder is the state of one buildenv.
type envBuilder struct {
	out string
	log io.Writer
	// priorities holds the priority of the package that each symlink
	// made in out points into; a missing entry counts as 0, as in Nix.
	priorities map[string]int
	// done holds the packages linked so far, postponed those propagated
	// by them and not linked yet.
	done, postponed map[string]bool
}

func (e *envBuilder) warn(format string, args ...any) {
	fmt.Fprintf(e.log, "warning: "+format+"\n", args...)
}

// addPackage links the package at dir into out, once, and notes the
// packages it propagates.
func (e *envBuilder) addPackage(dir string, priority int) error {
	if e.done[dir] {
		return nil
	}
	e.done[dir] = true
	if err := e.link(dir, e.out, priority); err != nil {
		return err
	}
	data, err := os.ReadFile(dir + "/nix-support/propagated-user-env-packages")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		return err
	}
	for _, p := range strings.Fields(string(data)) {
		if !e.done[p] {
			e.postponed[p] = true
		}
	}
	return nil
}

// link makes dstDir show srcDir's entries at the given priority (Nix's
// createLinks). An entry that dstDir lacks becomes a symlink to srcDir's,
// a directory too: most directories belong to one package, and then one
// link does. When a second package brings a directory that exists as such
// a link, the link is replaced by a real directory and both packages'
// directories are linked into it, recursively. A file that exists as a
// link is replaced if the new package's priority is better, kept if it is
// worse, and a collision if it is the same.
func (e *envBuilder) link(srcDir, dstDir string, priority int) error {
	ents, err := os.ReadDir(srcDir)
	if errors.Is(err, syscall.ENOTDIR) {
		e.warn("not including '%s' in the user environment because it's not a directory", srcDir)
		return nil
	}
	if err != nil {
		return err
	}
	for _, ent := range ents {
		if strings.HasPrefix(ent.Name(), ".") {
			continue // what a shell glob would not match
		}
		src := srcDir + "/" + ent.Name()
		dst := dstDir + "/" + ent.Name()
		st, err := os.Stat(src)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				// Nix names the link that would have been made.
				e.warn("skipping dangling symlink '%s'", dst)
				continue
			}
			return err
		}
		if envSkips(src) {
			continue
		}
		dstSt, err := os.Lstat(dst)
		exists := err == nil
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		switch {
		case !exists:
		case st.IsDir() && dstSt.IsDir():
			if err := e.link(src, dst, priority); err != nil {
				return err
			}
			continue
		case st.IsDir() && dstSt.Mode()&fs.ModeSymlink != 0:
			if err := e.splitLink(src, dst, priority); err != nil {
				return err
			}
			continue
		case !st.IsDir() && dstSt.Mode()&fs.ModeSymlink != 0:
			prev := e.priorities[dst]
			if prev == priority {
				old, _ := os.Readlink(dst)
				return fmt.Errorf("packages '%s' and '%s' have the same priority %d; "+
					"use 'nix-env --set-flag priority NUMBER INSTALLED_PKGNAME' "+
					"to change the priority of one of the conflicting packages"+
					" (0 being the highest priority)", src, old, priority)
			}
			if prev < priority {
				continue
			}
			if err := os.Remove(dst); err != nil {
				return err
			}
		case !st.IsDir() && dstSt.IsDir():
			return fmt.Errorf("collision between non-directory '%s' and directory '%s'", src, dst)
		}
		// Anything else that exists (cannot, since we make only links
		// and directories) fails here.
		if err := os.Symlink(src, dst); err != nil {
			return err
		}
		e.priorities[dst] = priority
	}
	return nil
}

// splitLink handles the directory src of a package meeting dst, a link
// made for another package's: if that leads to a directory, dst becomes a
// real directory holding the entries of both.
func (e *envBuilder) splitLink(src, dst string, priority int) error {
	target, err := filepath.EvalSymlinks(dst)
	if err != nil {
		return err
	}
	tst, err := os.Lstat(target)
	if err != nil {
		return err
	}
	if !tst.IsDir() {
		return fmt.Errorf("collision between '%s' and non-directory '%s'", src, target)
	}
	if err := os.Remove(dst); err != nil {
		return err
	}
	if err := os.Mkdir(dst, 0o755); err != nil {
		return err
	}
	if err := e.link(target, dst, e.priorities[dst]); err != nil {
		return err
	}
	return e.link(src, dst, priority)
}

// envSkips reports whether buildenv leaves path out.
func envSkips(path string) bool {
	for _, s := range envSkipped {
		if strings.HasSuffix(path, s) {
			return true
		}
	}
	return false
}
