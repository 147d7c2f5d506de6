package realise

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/storefs/storefs/store"
)

// builtOutput is one output of a finished build, on its way to validity.
type builtOutput struct {
	name   string
	actual string // where the contents are now (the build's output dir)
	info   *store.PathInfo
}

// registerOutputs checks the outputs the builder left and makes them valid
// together (Nix's registerOutputs and checkOutputs): each must exist, not
// be group- or world-writable and contain only files, directories and
// symlinks; it is canonicalised, hashed and scanned for references to the
// inputs and outputs; fixed-output hashes are compared; outputs must not
// refer to each other in a cycle; the derivation's reference and size
// restrictions apply. In check mode the outputs are compared with the
// valid ones instead of registered.
func (b *build) registerOutputs() *BuildError {
	w := b.w
	names := b.drv.OutputNames()
	candidates := map[string]store.Path{}
	for p := range b.inputs {
		candidates[p.HashPart()] = p
	}
	for _, name := range names {
		p := b.drv.Outputs[name].Path
		candidates[p.HashPart()] = p
	}
	hashParts := make([]string, 0, len(candidates))
	for h := range candidates {
		hashParts = append(hashParts, h)
	}

	outs := map[string]*builtOutput{}
	for _, name := range names {
		p := b.drv.Outputs[name].Path
		actual := filepath.Join(b.outDir, p.Base())
		fi, err := os.Lstat(actual)
		if err != nil {
			return newBuildError(b.drvPath, OutputRejected, "builder for '%s' failed to produce output path for output '%s' at '%s'", b.drvPath, name, actual)
		}
		if fi.Mode()&os.ModeSymlink == 0 && fi.Mode().Perm()&0o022 != 0 {
			return newBuildError(b.drvPath, OutputRejected, "suspicious ownership or permission on '%s' for output '%s'; rejecting this build output", actual, name)
		}
		if err := store.Canonicalise(actual); err != nil {
			return newBuildError(b.drvPath, OutputRejected, "output '%s' of '%s': %v", name, b.drvPath, err)
		}
		sr, err := store.ScanPath(actual, hashParts)
		if err != nil {
			return newBuildError(b.drvPath, OutputRejected, "output '%s' of '%s': %v", name, b.drvPath, err)
		}
		info := &store.PathInfo{
			Path:     p,
			NARHash:  sr.NARHash,
			NARSize:  sr.NARSize,
			Deriver:  b.drvPath,
			Ultimate: true,
		}
		refs := store.NewPathSet()
		for h := range sr.Found {
			refs.Add(candidates[h])
		}
		info.References = refs.Sorted()
		if o := b.drv.Outputs[name]; o.IsFixed() {
			if berr := b.checkFixedOutput(name, o, actual, fi, info); berr != nil {
				return berr
			}
		}
		outs[name] = &builtOutput{name: name, actual: actual, info: info}
	}

	if _, berr := b.sortOutputs(names, outs); berr != nil {
		return berr
	}

	if b.mode == Check {
		return b.compareWithValid(names, outs)
	}
	if berr := b.checkOutputs(outs); berr != nil {
		return berr
	}

	infos := make([]*store.PathInfo, 0, len(outs))
	var moved []store.Path
	now := time.Now()
	for _, name := range names {
		o := outs[name]
		o.info.RegistrationTime = now
		place := w.st.RenameIntoPlace
		if ok, _ := w.st.IsValid(o.info.Path); ok && b.mode == Repair {
			place = w.st.ReplaceValid
		}
		if err := place(o.actual, o.info.Path); err != nil {
			b.removeMoved(moved)
			return newBuildError(b.drvPath, MiscFailure, "%v", err)
		}
		moved = append(moved, o.info.Path)
		infos = append(infos, o.info)
	}
	if err := w.st.Register(infos); err != nil {
		b.removeMoved(moved)
		return newBuildError(b.drvPath, MiscFailure, "registering outputs of '%s': %v", b.drvPath, err)
	}
	return nil
}

// removeMoved takes back outputs renamed into place but not registered.
func (b *build) removeMoved(ps []store.Path) {
	for _, p := range ps {
		if err := store.RemoveTree(b.w.st.RealPath(p)); err != nil {
			b.w.logger.Warn("removing unregistered output", "path", p, "err", err)
		}
	}
}

// checkFixedOutput compares a fixed-output derivation's output with its
// declared hash. On a mismatch the contents are registered under the path
// their actual hash gives (as Nix 2.8 does, so a corrected derivation
// need not fetch again) and the build fails with Nix's message.
func (b *build) checkFixedOutput(name string, o store.DerivationOutput, actual string, fi os.FileInfo, info *store.PathInfo) *BuildError {
	recursive, want, err := o.FixedHash()
	if err != nil {
		return newBuildError(b.drvPath, MiscFailure, "%v", err)
	}
	if len(info.References) > 0 {
		refs := make([]string, len(info.References))
		for i, r := range info.References {
			refs[i] = "\n  " + string(r)
		}
		return newBuildError(b.drvPath, OutputRejected, "fixed-output derivation '%s' produced output '%s' that refers to store paths, which fixed-output paths may not:%s", b.drvPath, name, strings.Join(refs, ""))
	}
	if !recursive && (!fi.Mode().IsRegular() || fi.Mode().Perm()&0o100 != 0) { // Nix tests S_IXUSR only
		return newBuildError(b.drvPath, OutputRejected, "output path '%s' should be a non-executable regular file since recursive hashing is not enabled (outputHashMode=flat)", actual)
	}
	// A recursive SHA-256 is the NAR hash, which the scan computed.
	got := info.NARHash
	if !recursive || want.Algo != store.SHA256 {
		got, err = store.HashTree(actual, want.Algo, recursive)
	}
	if err != nil {
		return newBuildError(b.drvPath, OutputRejected, "hashing output '%s' of '%s': %v", name, b.drvPath, err)
	}
	info.CA = store.FixedCA(recursive, got)
	if got.Equal(want) {
		return nil
	}
	berr := newBuildError(b.drvPath, OutputRejected, "hash mismatch in fixed-output derivation '%s':\n  specified: %s\n     got:    %s", b.drvPath, want.SRI(), got.SRI())
	berr.HashMismatch = true
	berr.Bits = bitsFor(OutputRejected, true)
	actualPath, err := b.w.st.Dir.MakeFixedOutputPath(b.drv.Name, recursive, got, nil, false)
	if err == nil {
		moved := *info
		moved.Path = actualPath
		moved.RegistrationTime = time.Now()
		if err := b.w.st.AddTree(b.g.ctx, actual, &moved); err != nil {
			b.w.logger.Warn("registering the mismatched fixed output", "path", actualPath, "err", err)
		}
	}
	return berr
}

// sortOutputs orders the outputs so that each comes after the outputs it
// refers to, failing on a cycle with Nix's message; it follows Nix's
// topoSort visiting order so that the reported pair is the same.
func (b *build) sortOutputs(names []string, outs map[string]*builtOutput) ([]string, *BuildError) {
	byPath := map[store.Path]string{}
	for _, n := range names {
		byPath[outs[n].info.Path] = n
	}
	children := func(n string) []string {
		var c []string
		for _, r := range outs[n].info.References {
			if o, ok := byPath[r]; ok {
				c = append(c, o)
			}
		}
		sort.Strings(c)
		return c
	}
	var sorted []string
	visited := map[string]bool{}
	parents := map[string]bool{}
	var visit func(n, parent string) *BuildError
	visit = func(n, parent string) *BuildError {
		if parents[n] {
			return newBuildError(b.drvPath, OutputRejected, "cycle detected in build of '%s' in the references of output '%s' from output '%s'", b.drvPath, n, parent)
		}
		if visited[n] {
			return nil
		}
		visited[n] = true
		parents[n] = true
		for _, c := range children(n) {
			if c != n {
				if err := visit(c, n); err != nil {
					return err
				}
			}
		}
		sorted = append(sorted, n)
		delete(parents, n)
		return nil
	}
	for _, n := range names {
		if err := visit(n, ""); err != nil {
			return nil, err
		}
	}
	return sorted, nil
}

// compareWithValid is --check: the rebuilt outputs must have the NAR
// hashes of the valid ones.
func (b *build) compareWithValid(names []string, outs map[string]*builtOutput) *BuildError {
	for _, name := range names {
		o := outs[name]
		valid, err := b.w.st.PathInfo(o.info.Path)
		if err != nil {
			return newBuildError(b.drvPath, MiscFailure, "%v", err)
		}
		if valid.NARHash.Equal(o.info.NARHash) {
			continue
		}
		real := b.w.st.RealPath(o.info.Path)
		diffHook := b.w.opts.RunDiffHook && b.w.opts.DiffHook != ""
		if b.g.pol.keepFailed || diffHook {
			dst := real + ".check"
			store.RemoveTree(dst)
			if err := os.Rename(o.actual, dst); err == nil {
				if diffHook {
					b.runDiffHook(real, dst)
				}
				return newBuildError(b.drvPath, NotDeterministic, "derivation '%s' may not be deterministic: output '%s' differs from '%s'", b.drvPath, real, dst)
			}
		}
		return newBuildError(b.drvPath, NotDeterministic, "derivation '%s' may not be deterministic: output '%s' differs", b.drvPath, real)
	}
	return nil
}

// checkOutputs applies allowedReferences, allowedRequisites,
// disallowedReferences, disallowedRequisites, maxSize and maxClosureSize.
func (b *build) checkOutputs(outs map[string]*builtOutput) *BuildError {
	checks, err := b.attrs.OutputChecks()
	if err != nil {
		return newBuildError(b.drvPath, MiscFailure, "%v", err)
	}
	byPath := map[store.Path]*store.PathInfo{}
	for _, o := range outs {
		byPath[o.info.Path] = o.info
	}
	// closure of a just-built output: its own infos for the outputs, the
	// database for everything else.
	closure := func(p store.Path) (store.PathSet, uint64, error) {
		seen := store.NewPathSet()
		var size uint64
		stack := []store.Path{p}
		for len(stack) > 0 {
			q := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if seen.Has(q) {
				continue
			}
			seen.Add(q)
			info := byPath[q]
			if info == nil {
				if info, err = b.w.st.PathInfo(q); err != nil {
					return nil, 0, err
				}
			}
			size += info.NARSize
			stack = append(stack, info.References...)
		}
		return seen, size, nil
	}
	names := make([]string, 0, len(outs))
	for n := range outs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		c, ok := checks[name]
		if !ok {
			continue
		}
		info := outs[name].info
		if c.MaxSize != nil && info.NARSize > *c.MaxSize {
			return newBuildError(b.drvPath, OutputRejected, "path '%s' is too large at %d bytes; limit is %d bytes", info.Path, info.NARSize, *c.MaxSize)
		}
		if c.MaxClosureSize != nil {
			_, size, err := closure(info.Path)
			if err != nil {
				return newBuildError(b.drvPath, MiscFailure, "%v", err)
			}
			if size > *c.MaxClosureSize {
				return newBuildError(b.drvPath, OutputRejected, "closure of path '%s' is too large at %d bytes; limit is %d bytes", info.Path, size, *c.MaxClosureSize)
			}
		}
		for _, rc := range []struct {
			spec               []string
			allowed, recursive bool
		}{
			{c.AllowedReferences, true, false},
			{c.AllowedRequisites, true, true},
			{c.DisallowedReferences, false, false},
			{c.DisallowedRequisites, false, true},
		} {
			if rc.spec == nil {
				continue
			}
			spec := store.NewPathSet()
			for _, s := range rc.spec {
				if p, err := b.w.st.Dir.Parse(s); err == nil {
					spec.Add(p)
				} else if o, ok := b.drv.Outputs[s]; ok {
					spec.Add(o.Path)
				} else {
					return newBuildError(b.drvPath, OutputRejected, "derivation contains an illegal reference specifier '%s'", s)
				}
			}
			used := store.NewPathSet(info.References...)
			if rc.recursive {
				if used, _, err = closure(info.Path); err != nil {
					return newBuildError(b.drvPath, MiscFailure, "%v", err)
				}
			}
			// As in Nix 2.8: only the legacy attributes ignore self-references, and only in the requisites.
			if rc.recursive && c.IgnoreSelfRefs && b.attrs.Structured == nil {
				delete(used, info.Path)
			}
			var bad []string
			for _, p := range used.Sorted() {
				if spec.Has(p) != rc.allowed {
					bad = append(bad, "\n  "+string(p))
				}
			}
			if len(bad) > 0 {
				return newBuildError(b.drvPath, OutputRejected, "output '%s' is not allowed to refer to the following paths:%s", info.Path, strings.Join(bad, ""))
			}
		}
	}
	return nil
}

// runDiffHook runs diff-hook on a --check mismatch with the valid output,
// the new one, the derivation and the build directory (empty unless
// keep-failed kept it); its output is shown to the user, as Nix prints it.
func (b *build) runDiffHook(valid, check string) {
	cmd := exec.CommandContext(b.g.ctx, b.w.opts.DiffHook, valid, check, string(b.drvPath), b.buildDir)
	cmd.Env = b.w.opts.Environ
	out, err := cmd.CombinedOutput()
	if text := strings.TrimRight(string(out), "\n"); text != "" {
		b.w.emit(Event{Kind: Note, Drv: b.drvPath, Line: text})
	}
	if err != nil {
		b.w.emit(Event{Kind: Note, Drv: b.drvPath, Line: fmt.Sprintf("warning: diff hook '%s' failed: %v", b.w.opts.DiffHook, err)})
	}
}
