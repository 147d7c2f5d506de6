package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// GCOptions configure a garbage collection. The zero value deletes
// everything dead.
type GCOptions struct {
	// DryRun reports what would be deleted and deletes nothing.
	DryRun bool
	// MaxFreed stops once this many bytes are freed (--max-freed). Zero
	// means no limit.
	MaxFreed uint64
	// KeepOutputs is keep-outputs: the outputs of live derivations are
	// live.
	KeepOutputs bool
	// KeepDerivations is keep-derivations: the derivations of live
	// outputs are live.
	KeepDerivations bool
}

// GCResult is what a collection did.
type GCResult struct {
	// Deleted lists the paths deleted (or, with DryRun, that would be),
	// referrers before what they refer to.
	Deleted []Path
	// BytesFreed is the disk space their contents took.
	BytesFreed uint64
	// LeftoversFreed is the disk space that leftovers of interrupted work
	// took (not counted in BytesFreed): invalid entries in the backing
	// directory and entries of its temporary area that no work of this
	// Store uses.
	LeftoversFreed uint64
}

// gcBatch is how many paths one transaction makes invalid.
const gcBatch = 1000

// GC deletes every valid path that no root keeps alive: not reachable
// from the GC roots, the temporary roots, or (as configured) through
// derivers and outputs. Referrers go before what they refer to, so the
// closure invariant holds at every step; each batch is made invalid in the
// database before its contents are removed, so a crash leaves invalid
// leftovers (removed at the next Open), never a valid path without
// contents. Leftovers of interrupted work are removed too (see
// removeLeftovers), except with DryRun.
func (s *Store) GC(ctx context.Context, opts *GCOptions) (*GCResult, error) {
	if opts == nil {
		opts = &GCOptions{}
	}
	dead, err := s.deadPaths(opts)
	if err != nil {
		return nil, err
	}
	res := &GCResult{}
	if opts.DryRun {
		res.Deleted = dead
		for _, p := range dead {
			res.BytesFreed += diskUsage(s.RealPath(p))
		}
		return res, nil
	}
	// pending holds the dead paths not yet made invalid.
	pending := NewPathSet(dead...)
	for len(dead) > 0 {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		n := min(len(dead), gcBatch)
		if opts.MaxFreed > 0 {
			// Small batches near the limit, so as not to overshoot much.
			n = min(n, 16)
		}
		batch := dead[:n]
		dead = dead[n:]
		if s.gcBatchHook != nil {
			s.gcBatchHook(batch)
		}
		batch, dead, err = s.unregisterDead(batch, dead, pending)
		if err != nil {
			return res, fmt.Errorf("collecting garbage: %w", err)
		}
		if len(batch) == 0 {
			continue
		}
		s.notifyInvalid(batch)
		for _, p := range batch {
			s.drvHashes.Delete(p)
			res.BytesFreed += diskUsage(s.RealPath(p))
			if err := removeTree(s.RealPath(p)); err != nil {
				return res, fmt.Errorf("removing %s: %w", p, err)
			}
			res.Deleted = append(res.Deleted, p)
		}
		if opts.MaxFreed > 0 && res.BytesFreed >= opts.MaxFreed {
			break
		}
	}
	freed, err := s.removeLeftovers()
	res.LeftoversFreed = freed
	return res, err
}

// unregisterDead makes the paths of batch invalid, except those that
// became alive since the dead set was computed: a temporary root added
// meanwhile (a goal that found its input valid), a path now referred to
// by a valid path that is not about to go (one registered meanwhile, or
// kept by this check), and everything such a path refers to. The kept
// paths are dropped from batch and from rest (the later batches) and
// forgotten in pending, which holds the dead paths not yet invalid.
//
// The check and the unregistration happen under TempRoots.gc, which
// TempRoots.Add takes too: a root added before is seen here, one added
// after finds its path already invalid (and the goal realises it again).
// Keeping the whole closure of a kept path below it, and checking
// referrers, preserve the referrers-first order: no kept path refers to a
// path made invalid.
func (s *Store) unregisterDead(batch, rest []Path, pending PathSet) (kept, left []Path, err error) {
	s.TempRoots.gc.Lock()
	defer s.TempRoots.gc.Unlock()
	var seeds []Path
	for _, p := range s.TempRoots.list() {
		if pending.Has(p) {
			seeds = append(seeds, p)
		}
	}
	// A valid referrer outside pending stays, so its reference must too.
	// Referrers in pending are dead and come earlier in the order (this
	// batch or a kept path's closure, which is handled through seeds).
	held, err := s.DB.referredFromOutside(batch, pending)
	if err != nil {
		return nil, nil, err
	}
	seeds = append(seeds, held...)
	keep := NewPathSet()
	for len(seeds) > 0 {
		p := seeds[len(seeds)-1]
		seeds = seeds[:len(seeds)-1]
		if keep.Has(p) || !pending.Has(p) {
			continue
		}
		keep.Add(p)
		info, err := s.PathInfo(p)
		if err != nil {
			return nil, nil, err
		}
		seeds = append(seeds, info.References...)
	}
	if len(keep) > 0 {
		s.logger.Debug("garbage collection keeps paths that became alive", "count", len(keep))
		batch = slices.DeleteFunc(batch, keep.Has)
		rest = slices.DeleteFunc(rest, keep.Has)
		for p := range keep {
			delete(pending, p)
		}
	}
	if len(batch) == 0 {
		return batch, rest, nil
	}
	if err := s.DB.unregister(batch); err != nil {
		return nil, nil, err
	}
	for _, p := range batch {
		delete(pending, p)
	}
	return batch, rest, nil
}

// deadPaths computes the valid paths no root keeps alive, ordered
// referrers first. It does not hold off new temporary roots: each batch
// is checked again before it goes (unregisterDead).
func (s *Store) deadPaths(opts *GCOptions) ([]Path, error) {
	roots, err := s.Roots()
	if err != nil {
		return nil, err
	}
	all, err := s.AllValid()
	if err != nil {
		return nil, err
	}
	live := NewPathSet()
	var queue []Path
	add := func(p Path) {
		if !live.Has(p) {
			live.Add(p)
			queue = append(queue, p)
		}
	}
	for p := range roots {
		if ok, _ := s.IsValid(p); ok {
			add(p)
		}
	}
	for _, p := range s.TempRoots.list() {
		if ok, _ := s.IsValid(p); ok {
			add(p)
		}
	}
	for len(queue) > 0 {
		p := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		info, err := s.PathInfo(p)
		if err != nil {
			return nil, err
		}
		for _, r := range info.References {
			add(r)
		}
		if opts.KeepDerivations && info.Deriver != "" {
			if ok, _ := s.IsValid(info.Deriver); ok {
				add(info.Deriver)
			}
		}
		if opts.KeepOutputs && p.IsDerivation() {
			outs, err := s.DerivationOutputs(p)
			if err != nil {
				return nil, err
			}
			for _, o := range outs {
				if ok, _ := s.IsValid(o); ok {
					add(o)
				}
			}
		}
	}
	// Order the dead paths referrers first: each path is listed after
	// every dead path that refers to it (a depth-first walk up the
	// referrer edges). Live paths never refer to dead ones.
	deadSet := NewPathSet()
	for _, p := range all {
		if !live.Has(p) {
			deadSet.Add(p)
		}
	}
	var order []Path
	done := NewPathSet()
	var visit func(p Path) error
	visit = func(p Path) error {
		if done.Has(p) {
			return nil
		}
		done.Add(p)
		refs, err := s.Referrers(p)
		if err != nil {
			return err
		}
		for _, r := range refs {
			if r != p && deadSet.Has(r) {
				if err := visit(r); err != nil {
					return err
				}
			}
		}
		order = append(order, p)
		return nil
	}
	for _, p := range deadSet.Sorted() {
		if err := visit(p); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// diskUsage is the space a tree's files take (allocated blocks).
func diskUsage(name string) uint64 {
	var total uint64
	filepath.WalkDir(name, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		var st syscall.Stat_t
		if syscall.Lstat(p, &st) == nil {
			total += uint64(st.Blocks) * 512
		}
		return nil
	})
	return total
}

// removeLeftovers removes what interrupted work left in the backing
// directory, and returns the space it took: entries that are not valid
// paths (half-moved outputs, contents whose path was made invalid just
// before a crash), lock files nobody holds, kept --check results, and
// entries of the temporary area that this Store did not hand out (Open
// empties the area, so those are not work in progress; see tempArea).
// Only the process holding the store runs it, so a lock file that is not
// locked is stale.
func (s *Store) removeLeftovers() (uint64, error) {
	entries, err := os.ReadDir(s.realDir)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", s.realDir, err)
	}
	var freed uint64
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if name == tmpSubdir {
			n, err := s.removeTempLeftovers()
			freed += n
			if err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if base, ok := strings.CutSuffix(name, ".lock"); ok {
			if s.Locks.isHeld(base) {
				continue
			}
			if l, err := tryLockFile(filepath.Join(s.realDir, name)); err == nil && l != nil {
				os.Remove(filepath.Join(s.realDir, name))
				l.unlock()
			}
			continue
		}
		if CheckBase(name) == nil {
			if ok, err := s.IsValid(Path(string(s.Dir) + "/" + name)); err != nil || ok {
				continue
			}
			// An invalid path's lock holder may be about to move it into
			// place; it removes what is there itself.
			if s.Locks.isHeld(name) {
				continue
			}
		}
		s.logger.Warn("removing leftover", "name", name)
		size := diskUsage(filepath.Join(s.realDir, name))
		if err := removeTree(filepath.Join(s.realDir, name)); err != nil {
			errs = append(errs, err)
			continue
		}
		freed += size
	}
	return freed, errors.Join(errs...)
}
