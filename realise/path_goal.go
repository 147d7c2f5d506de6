package realise

import (
	"errors"

	"github.com/storefs/storefs/store"
)

// runPathGoal realises a store path that is not a derivation: valid
// already, substituted (with its references, not its deriver) if a cache
// has it, or else built through a derivation the output index knows.
func (w *Worker) runPathGoal(g *goal) *goalResult {
	p := g.key.path
	info, err := w.st.PathInfo(p)
	switch {
	case err == nil && g.key.mode != Repair:
		return &goalResult{status: AlreadyValid}
	case err == nil:
		if sr, err := store.ScanPath(w.st.RealPath(p), nil); err == nil && sr.NARHash.Equal(info.NARHash) {
			return &goalResult{status: AlreadyValid}
		}
	case !errors.Is(err, store.ErrNotValid):
		return failed("", MiscFailure, "%v", err)
	}
	var substErr *goalResult
	if len(w.opts.Substituters) > 0 {
		sub := w.acquire(goalKey{substitutionGoal, p, g.key.mode}, g.pol, nil, w.runSubstitutionGoal)
		res, err := wait(g.ctx, sub)
		w.release(sub)
		if err != nil {
			return cancelled("", err)
		}
		if res.status != NoSubstituters {
			if res.status.Success() || !g.pol.fallback {
				return res
			}
			substErr = res
		}
	}
	derivers, err := w.st.Derivers(p)
	if err != nil {
		return failed("", MiscFailure, "%v", err)
	}
	for _, d := range derivers {
		if ok, _ := w.st.IsValid(d.Drv); !ok {
			continue
		}
		mode := Normal
		if g.key.mode == Repair {
			mode = Repair
		}
		sub := w.acquire(goalKey{derivationGoal, d.Drv, mode}, g.pol, []string{d.Output}, w.runDerivationGoal)
		defer w.release(sub)
		res, err := wait(g.ctx, sub)
		if err != nil {
			return cancelled(d.Drv, err)
		}
		return &goalResult{status: res.status, err: res.err}
	}
	if substErr != nil {
		return substErr
	}
	return pathFailed(p, MiscFailure, "path '%s' is required, but there is no substituter that can build it", p)
}
