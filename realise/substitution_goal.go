package realise

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/cache"
)

// runSubstitutionGoal substitutes one store path from the substituters,
// in priority order (Nix's SubstitutionGoal): the first that has a
// narinfo for it wins; its references are substituted first (the closure
// invariant); then the NAR is downloaded, checked and registered. A
// substituter that fails is skipped for the next. When none has the path
// the goal ends with NoSubstituters, which a derivation goal takes as
// "build it".
func (w *Worker) runSubstitutionGoal(g *goal) *goalResult {
	p := g.key.path
	if ok, err := w.st.IsValid(p); err != nil {
		return pathFailed(p, MiscFailure, "%v", err)
	} else if ok && g.key.mode != Repair {
		return &goalResult{status: AlreadyValid}
	}
	var lastErr error
	for _, sub := range w.opts.Substituters {
		ni, err := sub.NARInfo(g.ctx, p.HashPart())
		switch {
		case errors.Is(err, cache.ErrNotFound):
			continue
		case errors.Is(err, cache.ErrUntrusted):
			w.emit(Event{Kind: Note, Path: p, Substituter: sub.URL(), Line: "warning: " + err.Error()})
			continue
		case err != nil:
			if g.ctx.Err() != nil {
				return cancelled("", context.Cause(g.ctx))
			}
			lastErr = err
			w.logger.Warn("substituter failed", "substituter", sub.URL(), "path", p, "err", err)
			continue
		}
		if ni.StorePath != p {
			lastErr = fmt.Errorf("substituter '%s' answered for '%s' with '%s'", sub.URL(), p, ni.StorePath)
			continue
		}
		if res := w.substituteReferences(g, p, ni); res != nil {
			return res
		}
		if err := w.fetch(g, sub, ni); err != nil {
			if g.ctx.Err() != nil {
				return cancelled("", context.Cause(g.ctx))
			}
			lastErr = err
			w.emit(Event{Kind: SubstituteFinished, Path: p, Substituter: sub.URL(), Status: TransientFailure})
			w.logger.Warn("substitution failed", "substituter", sub.URL(), "path", p, "err", err)
			continue
		}
		w.emit(Event{Kind: SubstituteFinished, Path: p, Substituter: sub.URL(), Status: Substituted})
		w.emit(Event{Kind: PathValid, Path: p})
		return &goalResult{status: Substituted}
	}
	if lastErr != nil {
		return pathFailed(p, TransientFailure, "substituting '%s': %v", p, lastErr)
	}
	return pathFailed(p, NoSubstituters, "path '%s' is required, but there is no substituter that can build it", p)
}

// substituteReferences realises the references of a path to substitute
// first: a path is valid only once everything it refers to is.
func (w *Worker) substituteReferences(g *goal, p store.Path, ni *cache.NARInfo) *goalResult {
	var subs []*goal
	defer func() {
		for _, s := range subs {
			w.release(s)
		}
	}()
	for _, r := range ni.References {
		if r == p {
			continue
		}
		if ok, _ := w.st.IsValid(r); ok {
			continue
		}
		subs = append(subs, w.acquire(goalKey{substitutionGoal, r, Normal}, g.pol, nil, w.runSubstitutionGoal))
	}
	// Valid paths never refer to each other in a cycle, but a cache may
	// say they do; the goals would then wait for each other for ever.
	if r := w.waitOn(g, subs); r != "" {
		e := newBuildError("", MiscFailure, "cycle detected in the references of path '%s': '%s' refers back to it", p, r)
		e.Path = p
		return &goalResult{status: DependencyFailed, err: e}
	}
	defer w.waitOn(g, nil)
	failures, err := waitAll(g.ctx, subs, g.pol.keepGoing)
	if err != nil {
		return cancelled("", err)
	}
	for _, s := range subs {
		select {
		case <-s.done:
			if s.res.status == NoSubstituters {
				failures = append(failures, s.res)
			}
		default:
		}
	}
	if len(failures) > 0 {
		e := newBuildError("", MiscFailure, "some references of path '%s' could not be realised", p)
		e.Path = p
		for _, f := range failures {
			e.Bits |= f.err.Bits
		}
		return &goalResult{status: DependencyFailed, err: e}
	}
	return nil
}

// fetch downloads and registers one path, holding a substitution slot
// (max-substitution-jobs), separate from the build slots.
func (w *Worker) fetch(g *goal, sub cache.Cache, ni *cache.NARInfo) error {
	select {
	case w.substSlots <- struct{}{}:
	case <-g.ctx.Done():
		return context.Cause(g.ctx)
	}
	defer func() { <-w.substSlots }()
	// The references substituted first must survive until this path
	// refers to them.
	release := w.st.TempRoots.Add(append([]store.Path{ni.StorePath}, ni.References...)...)
	defer release()
	w.emit(Event{Kind: SubstituteStarted, Path: ni.StorePath, Substituter: sub.URL()})
	w.logger.Info("substituting", "path", ni.StorePath, "substituter", sub.URL())
	if g.key.mode == Repair {
		if ok, _ := w.st.IsValid(ni.StorePath); ok {
			return cache.Repair(g.ctx, w.st, sub, ni)
		}
	}
	return cache.Fetch(g.ctx, w.st, sub, ni)
}

func pathFailed(p store.Path, s Status, format string, args ...any) *goalResult {
	e := newBuildError("", s, format, args...)
	e.Path = p
	return &goalResult{status: s, err: e}
}

// hasSubstitute reports whether a substituter has a narinfo for p.
func (w *Worker) hasSubstitute(ctx context.Context, p store.Path) (bool, error) {
	ni, err := w.substituteInfo(ctx, p)
	return ni != nil, err
}

// substituteInfo returns the narinfo of the first substituter that has p,
// or nil.
func (w *Worker) substituteInfo(ctx context.Context, p store.Path) (*cache.NARInfo, error) {
	for _, sub := range w.opts.Substituters {
		ni, err := sub.NARInfo(ctx, p.HashPart())
		switch {
		case err == nil && ni.StorePath == p:
			return ni, nil
		case err == nil:
			continue
		case errors.Is(err, cache.ErrNotFound), errors.Is(err, cache.ErrUntrusted), errors.Is(err, cache.ErrUnavailable):
			continue
		case ctx.Err() != nil:
			return nil, context.Cause(ctx)
		default:
			w.logger.Warn("substituter failed", "substituter", sub.URL(), "path", p, "err", err)
		}
	}
	return nil, nil
}

// waitOn records that g waits for subs (nil: for nothing any more). If
// one of subs already waits, directly or through others, for g, nothing
// is recorded and the path of that one is returned: waiting would never
// end. The check and the record are one step under the lock, so of two
// goals closing a cycle at once the second sees the first's edges.
func (w *Worker) waitOn(g *goal, subs []*goal) store.Path {
	w.mu.Lock()
	defer w.mu.Unlock()
	g.waitsOn = nil
	for _, s := range subs {
		seen := map[*goal]bool{}
		stack := []*goal{s}
		for len(stack) > 0 {
			x := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if x == g {
				return s.key.path
			}
			if !seen[x] {
				seen[x] = true
				stack = append(stack, x.waitsOn...)
			}
		}
	}
	g.waitsOn = subs
	return ""
}

// narinfoQueries bounds the narinfo lookups in flight at once.
const narinfoQueries = 16

// substituteInfos asks for the narinfos of ps concurrently; paths no
// substituter has are missing from the result.
func (w *Worker) substituteInfos(ctx context.Context, ps []store.Path) map[store.Path]*cache.NARInfo {
	out := make(map[store.Path]*cache.NARInfo, len(ps))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, narinfoQueries)
	for _, p := range ps {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if ni, _ := w.substituteInfo(ctx, p); ni != nil {
				mu.Lock()
				out[p] = ni
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out
}
