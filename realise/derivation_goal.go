package realise

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"

	"github.com/storefs/storefs/store"
)

// runDerivationGoal realises a derivation's wanted outputs: have the
// derivation → outputs already valid? → realise the inputs → wait for a
// build slot and the output locks → check validity again → build in the
// sandbox → register the outputs (Nix's DerivationGoal).
func (w *Worker) runDerivationGoal(g *goal) *goalResult {
	drvPath := g.key.path
	mode := g.key.mode
	// The .drv stays while we work from it, whatever a collection in
	// between thinks (Nix roots it in getDerivation too).
	defer w.st.TempRoots.Add(drvPath)()
	if ok, err := w.st.IsValid(drvPath); err == nil && !ok && len(w.opts.Substituters) > 0 {
		// The .drv itself may come from a cache.
		sub := w.acquire(goalKey{substitutionGoal, drvPath, Normal}, g.pol, nil, w.runSubstitutionGoal)
		res, err := wait(g.ctx, sub)
		w.release(sub)
		if err != nil {
			return cancelled(drvPath, err)
		}
		if !res.status.Success() {
			return res
		}
	}
	drv, err := w.st.ReadDerivation(drvPath)
	if err != nil {
		return failed(drvPath, MiscFailure, "cannot realise '%s': %v", drvPath, err)
	}
	outputs := map[string]store.Path{}
	for name, o := range drv.Outputs {
		outputs[name] = o.Path
	}
	attrs, err := drv.Attrs()
	if err != nil {
		return failed(drvPath, MiscFailure, "%v", err)
	}
	wanted := w.takeWantedOutputs(g)
	for name := range wanted {
		if _, ok := outputs[name]; !ok {
			return failed(drvPath, MiscFailure, "derivation '%s' does not have wanted outputs '%s'", drvPath, name)
		}
	}
	done := func(s Status) *goalResult { return &goalResult{status: s, outputs: outputs} }

	switch mode {
	case Normal:
		if ok, err := w.outputsValid(outputs, wanted); err != nil {
			return failed(drvPath, MiscFailure, "%v", err)
		} else if ok {
			return done(AlreadyValid)
		}
	case Check:
		if ok, err := w.outputsValid(outputs, nil); err != nil {
			return failed(drvPath, MiscFailure, "%v", err)
		} else if !ok {
			return failed(drvPath, MiscFailure, "some outputs of '%s' are not valid, so checking is not possible", drvPath)
		}
	case Repair:
		if ok, err := w.outputsGood(outputs); err != nil {
			return failed(drvPath, MiscFailure, "%v", err)
		} else if ok {
			return done(AlreadyValid)
		}
	}

	if mode == Normal {
		if res := w.substituteOutputs(g, drvPath, attrs, outputs, wanted); res != nil {
			return res
		}
	}

	// Realise the inputs: the wanted outputs of input derivations. Input
	// sources are references of the valid .drv, so they are valid.
	inputMode := Normal
	if mode == Repair {
		inputMode = Repair
	}
	var subs []*goal
	defer func() {
		for _, s := range subs {
			w.release(s)
		}
	}()
	inDrvs := make([]store.Path, 0, len(drv.InputDrvs))
	for p := range drv.InputDrvs {
		inDrvs = append(inDrvs, p)
	}
	store.SortPaths(inDrvs)
	for _, p := range inDrvs {
		subs = append(subs, w.acquire(goalKey{derivationGoal, p, inputMode}, g.pol, drv.InputDrvs[p], w.runDerivationGoal))
	}
	failures, err := waitAll(g.ctx, subs, g.pol.keepGoing)
	if err != nil {
		return cancelled(drvPath, err)
	}
	if len(failures) > 0 {
		e := &BuildError{Drv: drvPath, Status: DependencyFailed,
			Msg: fmt.Sprintf("%d dependencies of derivation '%s' failed to build", len(failures), drvPath)}
		for _, f := range failures {
			e.Bits |= f.err.Bits
		}
		return &goalResult{status: DependencyFailed, err: e, outputs: outputs}
	}

	// The input closure: the closures of the wanted outputs of the input
	// derivations, and of the input sources.
	roots := append([]store.Path(nil), drv.InputSrcs...)
	for i, p := range inDrvs {
		res := subs[i].res
		for _, o := range drv.InputDrvs[p] {
			out, ok := res.outputs[o]
			if !ok {
				return failed(drvPath, MiscFailure, "derivation '%s' requires non-existent output '%s' from input derivation '%s'", drvPath, o, p)
			}
			roots = append(roots, out)
		}
	}
	closure, err := w.st.Closure(roots)
	if err != nil {
		return failed(drvPath, MiscFailure, "computing the input closure of '%s': %v", drvPath, err)
	}
	// The inputs and the outputs stay alive while we build; a collection
	// that ran between the closure and the roots is caught here.
	releaseRoots := w.st.TempRoots.Add(append(closure, outputPathsOf(outputs)...)...)
	defer releaseRoots()
	for _, p := range closure {
		if ok, err := w.st.IsValid(p); err != nil || !ok {
			return failed(drvPath, MiscFailure, "input '%s' of '%s' was garbage-collected while the build was being prepared", p, drvPath)
		}
	}
	inputs := store.NewPathSet(closure...)

	if err := w.checkPlatform(drvPath, drv, attrs); err != nil {
		return &goalResult{status: MiscFailure, err: err, outputs: outputs}
	}
	if noChroot, err := attrs.NoChroot(); err != nil {
		return failed(drvPath, MiscFailure, "%v", err)
	} else if noChroot && w.opts.Sandbox {
		return failed(drvPath, MiscFailure, "derivation '%s' has '__noChroot' set, but that's not allowed when 'sandbox' is 'true'", drvPath)
	}

	// A build slot, then the output locks, in that order: a goal waiting
	// for a slot holds no locks another goal could need.
	select {
	case w.buildSlots <- struct{}{}:
	case <-g.ctx.Done():
		return cancelled(drvPath, context.Cause(g.ctx))
	}
	slotHeld := true
	releaseSlot := func() {
		if slotHeld {
			<-w.buildSlots
			slotHeld = false
		}
	}
	defer releaseSlot()
	outPaths := make([]store.Path, 0, len(outputs))
	for _, p := range outputs {
		outPaths = append(outPaths, p)
	}
	lock, err := w.st.Locks.Lock(g.ctx, outPaths)
	if err != nil {
		return cancelled(drvPath, err)
	}
	defer lock.Unlock()
	// Someone may have built them while we waited for the locks.
	if mode == Normal {
		if ok, err := w.outputsValid(outputs, nil); err != nil {
			return failed(drvPath, MiscFailure, "%v", err)
		} else if ok {
			w.logger.Debug("someone beat us to it", "drv", drvPath)
			return done(AlreadyValid)
		}
	}

	w.collectIfFull()
	b := &build{w: w, g: g, drvPath: drvPath, drv: drv, attrs: attrs, inputs: inputs, mode: mode}
	defer b.cleanup()
	berr := b.run()
	if berr == nil {
		berr = b.registerOutputs()
	}
	b.finish(berr == nil)
	if berr != nil {
		w.emit(Event{Kind: BuildFinished, Drv: drvPath, Mode: mode, Status: berr.Status, Err: berr})
		return &goalResult{status: berr.Status, err: berr, outputs: outputs}
	}
	lock.Unlock()
	releaseSlot()
	w.emit(Event{Kind: BuildFinished, Drv: drvPath, Mode: mode, Status: Built})
	if mode != Check {
		for _, p := range outPaths {
			w.emit(Event{Kind: PathValid, Path: p, Drv: drvPath})
		}
	}
	if err := w.runPostBuildHook(g.ctx, drvPath, outPaths); err != nil {
		return failed(drvPath, MiscFailure, "%v", err)
	}
	return done(Built)
}

func failed(drv store.Path, s Status, format string, args ...any) *goalResult {
	return &goalResult{status: s, err: newBuildError(drv, s, format, args...)}
}

func cancelled(drv store.Path, cause error) *goalResult {
	return &goalResult{status: Cancelled, err: &BuildError{Drv: drv, Status: Cancelled, Msg: fmt.Sprintf("realising '%s' was cancelled: %v", drv, cause)}}
}

// outputsValid reports whether the outputs in wanted (nil: all) are valid.
func (w *Worker) outputsValid(outputs map[string]store.Path, wanted map[string]bool) (bool, error) {
	for name, p := range outputs {
		if wanted != nil && !wanted[name] {
			continue
		}
		ok, err := w.st.IsValid(p)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// outputsGood reports whether every output is valid and its contents
// still have their NAR hash (for --repair).
func (w *Worker) outputsGood(outputs map[string]store.Path) (bool, error) {
	for _, p := range outputs {
		info, err := w.st.PathInfo(p)
		if errors.Is(err, store.ErrNotValid) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		sr, err := store.ScanPath(w.st.RealPath(p), nil)
		if err != nil || !sr.NARHash.Equal(info.NARHash) {
			return false, nil
		}
	}
	return true, nil
}

// checkPlatform refuses a derivation this machine cannot build, with Nix's
// message, before any builder starts.
func (w *Worker) checkPlatform(drvPath store.Path, drv *store.Derivation, attrs *store.Attrs) *BuildError {
	required, err := attrs.RequiredSystemFeatures()
	if err != nil {
		return newBuildError(drvPath, MiscFailure, "%v", err)
	}
	platformOK := drv.Platform == "builtin" || drv.Platform == w.opts.System || slices.Contains(w.opts.ExtraPlatforms, drv.Platform)
	featuresOK := true
	for _, f := range required {
		if !slices.Contains(w.opts.SystemFeatures, f) {
			featuresOK = false
		}
	}
	if platformOK && featuresOK {
		return nil
	}
	req := append([]string(nil), required...)
	sort.Strings(req)
	have := append([]string(nil), w.opts.SystemFeatures...)
	sort.Strings(have)
	return newBuildError(drvPath, MiscFailure,
		"a '%s' with features {%s} is required to build '%s', but I am a '%s' with features {%s}",
		drv.Platform, strings.Join(req, ", "), drvPath, w.opts.System, strings.Join(have, ", "))
}

// runPostBuildHook runs post-build-hook with DRV_PATH and OUT_PATHS, after
// the build's slot and locks are released so it blocks no other build.
func (w *Worker) runPostBuildHook(ctx context.Context, drvPath store.Path, outs []store.Path) error {
	if w.opts.PostBuildHook == "" {
		return nil
	}
	sorted := append([]store.Path(nil), outs...)
	store.SortPaths(sorted)
	names := make([]string, len(sorted))
	for i, p := range sorted {
		names[i] = string(p)
	}
	cmd := exec.CommandContext(ctx, w.opts.PostBuildHook)
	cmd.Env = append(append([]string(nil), w.opts.Environ...), "DRV_PATH="+string(drvPath), "OUT_PATHS="+strings.Join(names, " "))
	out, err := cmd.CombinedOutput()
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if line != "" {
			w.logger.Debug("post-build-hook", "drv", drvPath, "line", line)
		}
	}
	if err != nil {
		return fmt.Errorf("post-build-hook '%s' for '%s' failed: %w", filepath.Base(w.opts.PostBuildHook), drvPath, err)
	}
	return nil
}

// substituteOutputs tries the substituters for the wanted outputs that are
// not valid, before building (unless allowSubstitutes is false). It
// returns the goal's result when that settles it: all substituted, or a
// substituter failed and fallback is off (Nix's message); nil means build.
func (w *Worker) substituteOutputs(g *goal, drvPath store.Path, attrs *store.Attrs, outputs map[string]store.Path, wanted map[string]bool) *goalResult {
	if len(w.opts.Substituters) == 0 {
		return nil
	}
	if ok, err := attrs.SubstitutesAllowed(); err != nil || !ok {
		return nil
	}
	var subs []*goal
	defer func() {
		for _, s := range subs {
			w.release(s)
		}
	}()
	names := make([]string, 0, len(outputs))
	for n := range outputs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if wanted != nil && !wanted[n] {
			continue
		}
		if ok, _ := w.st.IsValid(outputs[n]); ok {
			continue
		}
		subs = append(subs, w.acquire(goalKey{substitutionGoal, outputs[n], Normal}, keepGoing(g.pol), nil, w.runSubstitutionGoal))
	}
	if _, err := waitAll(g.ctx, subs, true); err != nil {
		return cancelled(drvPath, err)
	}
	nFailed := 0
	for _, s := range subs {
		if !s.res.status.Success() && s.res.status != NoSubstituters {
			nFailed++
		}
	}
	if ok, err := w.outputsValid(outputs, wanted); err == nil && ok {
		return &goalResult{status: Substituted, outputs: outputs}
	}
	if nFailed > 0 && !g.pol.fallback {
		return failed(drvPath, TransientFailure, "some substitutes for the outputs of derivation '%s' failed (usually happens due to networking issues); try '--fallback' to build derivation from source ", drvPath)
	}
	return nil
}

func outputPathsOf(outputs map[string]store.Path) []store.Path {
	ps := make([]store.Path, 0, len(outputs))
	for _, p := range outputs {
		ps = append(ps, p)
	}
	return ps
}

// collectIfFull collects garbage when the backing store's filesystem has
// less than min-free bytes free, up to max-free (Nix's auto-GC). One
// collection runs at a time; builds that find one running go on.
func (w *Worker) collectIfFull() {
	if w.opts.MinFree == 0 || !w.gcMu.TryLock() {
		return
	}
	defer w.gcMu.Unlock()
	var st syscall.Statfs_t
	if err := syscall.Statfs(w.st.RealDir(), &st); err != nil {
		w.logger.Warn("checking free space", "err", err)
		return
	}
	free := st.Bavail * uint64(st.Bsize)
	if free >= w.opts.MinFree {
		return
	}
	var want uint64
	if w.opts.MaxFree > free {
		want = w.opts.MaxFree - free
	}
	w.logger.Warn("running out of disk space; collecting garbage", "free", free, "min_free", w.opts.MinFree)
	res, err := w.st.GC(w.ctx, &store.GCOptions{MaxFreed: want, KeepOutputs: w.opts.KeepOutputs, KeepDerivations: w.opts.KeepDerivations})
	if err != nil {
		w.logger.Error("automatic garbage collection", "err", err)
		return
	}
	w.emit(Event{Kind: Note, Line: fmt.Sprintf("note: collected %d store paths, %d bytes, to make room", len(res.Deleted), res.BytesFreed)})
}
