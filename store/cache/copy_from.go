package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/storefs/storefs/store"
)

// source is where CopyFrom gets a path.
type source struct {
	c  Cache
	ni *NARInfo
}

// CopyFrom imports the closures of paths from caches into st, like `nix
// copy --from`: the narinfo of each path that is not valid yet comes
// from the first cache in caches that has it (order them by priority),
// then the paths are fetched (Fetch), references first, up to opts.Jobs
// at once. A .drv path means the .drv file and its closure (its input
// derivations and sources, not its outputs); registering it adds its
// outputs to the output index. Paths valid in st already are skipped
// along with their closures. A path no cache has fails with ErrNotFound;
// if a cache failed, its error is returned instead.
func CopyFrom(ctx context.Context, st *store.Store, caches []Cache, paths []store.Path, opts *CopyOptions) error {
	o := opts.withDefaults(defaultCopyJobs)
	sources, err := resolveClosure(ctx, st, caches, paths, o.Jobs)
	if err != nil {
		return err
	}
	todo := make([]store.Path, 0, len(sources))
	for p := range sources {
		todo = append(todo, p)
	}
	refs := func(p store.Path) []store.Path { return sources[p].ni.References }
	return inOrder(ctx, todo, refs, o.Jobs, func(ctx context.Context, p store.Path) error {
		src := sources[p]
		o.Logger.Info("copying path", "path", p, "substituter", src.c.URL())
		return Fetch(ctx, st, src.c, src.ni)
	})
}

// resolveClosure finds the narinfos of the closure of paths, leaving out
// what is valid in st, one level of references at a time with up to jobs
// lookups at once.
func resolveClosure(ctx context.Context, st *store.Store, caches []Cache, paths []store.Path, jobs int) (map[store.Path]source, error) {
	sources := map[store.Path]source{}
	seen := store.NewPathSet()
	var level []store.Path
	add := func(p store.Path) error {
		if seen.Has(p) {
			return nil
		}
		seen.Add(p)
		ok, err := st.IsValid(p)
		if err != nil || ok {
			return err
		}
		level = append(level, p)
		return nil
	}
	for _, p := range paths {
		if p.Dir() != st.Dir {
			return nil, fmt.Errorf("path '%s' is not in the store %s: %w", p, st.Dir, store.ErrInvalidPath)
		}
		if err := add(p); err != nil {
			return nil, err
		}
	}
	for len(level) > 0 {
		found := make([]source, len(level))
		errs := make([]error, len(level))
		sem := make(chan struct{}, jobs)
		var wg sync.WaitGroup
		for i, p := range level {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				found[i], errs[i] = lookup(ctx, caches, p)
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		next := level
		level = nil
		for i, p := range next {
			sources[p] = found[i]
			for _, r := range found[i].ni.References {
				if err := add(r); err != nil {
					return nil, err
				}
			}
		}
	}
	return sources, nil
}

// lookup asks caches in order for p's narinfo.
func lookup(ctx context.Context, caches []Cache, p store.Path) (source, error) {
	var failure error
	for _, c := range caches {
		ni, err := c.NARInfo(ctx, p.HashPart())
		if err == nil && ni.StorePath != p {
			err = fmt.Errorf("binary cache '%s' has '%s', not '%s'", c.URL(), ni.StorePath, p)
		}
		if err == nil {
			return source{c: c, ni: ni}, nil
		}
		if ctx.Err() != nil {
			return source{}, err
		}
		if !errors.Is(err, ErrNotFound) && failure == nil {
			failure = err
		}
	}
	if failure != nil {
		return source{}, failure
	}
	return source{}, fmt.Errorf("path '%s' is not in any binary cache: %w", p, ErrNotFound)
}
