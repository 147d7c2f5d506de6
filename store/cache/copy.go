package cache

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/storefs/storefs/store"
)

// defaultCopyJobs is how many paths CopyFrom works on at once: Nix's
// max-substitution-jobs. CopyTo, whose work is compressing, defaults to
// the number of CPUs.
const defaultCopyJobs = 16

// CopyOptions configure CopyFrom and CopyTo. A nil *CopyOptions means all
// defaults.
type CopyOptions struct {
	// Jobs is how many paths are copied at once (max-substitution-jobs).
	// Zero means 16 for CopyFrom and the number of CPUs for CopyTo.
	Jobs int
	// Logger gets a message for each path copied (Info). Nil discards
	// them.
	Logger *slog.Logger
}

func (o *CopyOptions) withDefaults(jobs int) CopyOptions {
	var r CopyOptions
	if o != nil {
		r = *o
	}
	if r.Jobs <= 0 {
		r.Jobs = jobs
	}
	if r.Logger == nil {
		r.Logger = discardLogger()
	}
	return r
}

// inOrder calls fn for each of paths, references first: fn(p) starts only
// once fn has succeeded for each of p's references among paths (refs
// gives them; a self-reference does not count). Up to jobs calls run at
// once. The first error cancels the context of the others and is
// returned once every running call has ended.
func inOrder(ctx context.Context, paths []store.Path, refs func(store.Path) []store.Path, jobs int, fn func(context.Context, store.Path) error) error {
	set := store.NewPathSet(paths...)
	waiting := map[store.Path]int{}
	referrers := map[store.Path][]store.Path{}
	var ready []store.Path
	for _, p := range set.Sorted() {
		for _, r := range refs(p) {
			if r != p && set.Has(r) {
				waiting[p]++
				referrers[r] = append(referrers[r], p)
			}
		}
		if waiting[p] == 0 {
			ready = append(ready, p)
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		p   store.Path
		err error
	}
	results := make(chan result)
	running, done := 0, 0
	var firstErr error
	for done < len(set) {
		for firstErr == nil && running < jobs && len(ready) > 0 {
			p := ready[0]
			ready = ready[1:]
			running++
			go func() { results <- result{p, fn(ctx, p)} }()
		}
		if running == 0 {
			if firstErr != nil {
				return firstErr
			}
			return fmt.Errorf("the references of %d paths form a cycle", len(set)-done)
		}
		r := <-results
		running--
		done++
		if r.err != nil {
			if firstErr == nil {
				firstErr = r.err
				cancel()
			}
			continue
		}
		for _, q := range referrers[r.p] {
			if waiting[q]--; waiting[q] == 0 {
				ready = append(ready, q)
			}
		}
	}
	return firstErr
}
