package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// tempArea remembers which entries of the store's temporary area this
// Store handed out, so that garbage collection, which may run in the
// mount daemon while builds and substitutions work there, removes only
// entries that are nobody's work in progress. Open empties the area, so
// every entry made later by this process goes through MkdirTemp; one that
// did not is a leftover.
//
// An entry is forgotten once it is gone from the directory (its user
// removed it or renamed it away): MkdirTemp and the collector list the
// directory under mu, and MkdirTemp creates and records an entry under
// mu, so no entry is ever seen on disk but not yet recorded.
type tempArea struct {
	mu sync.Mutex
	// ours holds the base names MkdirTemp returned that may still exist.
	ours map[string]struct{}
	// pruneAt is the size of ours at which MkdirTemp forgets the entries
	// that are gone, so a long-running daemon's set stays as small as
	// what is in use (amortised: the threshold doubles with what is left).
	pruneAt int
}

// minPruneAt is the smallest set MkdirTemp bothers to prune.
const minPruneAt = 64

// MkdirTemp makes a fresh directory in the store's temporary area, which is
// on the backing store's filesystem and emptied when the store is opened.
// The caller removes it, or renames it away, when done; until then garbage
// collection leaves it alone.
func (s *Store) MkdirTemp(pattern string) (string, error) {
	t := &s.temp
	t.mu.Lock()
	defer t.mu.Unlock()
	d, err := os.MkdirTemp(s.tmpDir, pattern)
	if err != nil {
		return "", fmt.Errorf("creating temporary directory: %w", err)
	}
	if t.ours == nil {
		t.ours = map[string]struct{}{}
	}
	t.ours[filepath.Base(d)] = struct{}{}
	if len(t.ours) >= max(t.pruneAt, minPruneAt) {
		if names, err := s.tempNames(); err == nil {
			t.forgetGone(names)
		}
		t.pruneAt = 2 * len(t.ours)
	}
	return d, nil
}

// tempNames lists the temporary area.
func (s *Store) tempNames() (map[string]struct{}, error) {
	ents, err := os.ReadDir(s.tmpDir)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", s.tmpDir, err)
	}
	names := make(map[string]struct{}, len(ents))
	for _, e := range ents {
		names[e.Name()] = struct{}{}
	}
	return names, nil
}

// forgetGone drops from ours the entries not in names. t.mu is held.
func (t *tempArea) forgetGone(names map[string]struct{}) {
	for n := range t.ours {
		if _, ok := names[n]; !ok {
			delete(t.ours, n)
		}
	}
}

// removeTempLeftovers removes the entries of the temporary area that this
// Store did not hand out, and returns the space they took. Entries it
// handed out are left to their users, even if abandoned: nothing tells an
// abandoned one from one in use.
func (s *Store) removeTempLeftovers() (uint64, error) {
	t := &s.temp
	t.mu.Lock()
	names, err := s.tempNames()
	if err != nil {
		t.mu.Unlock()
		return 0, err
	}
	t.forgetGone(names)
	var stray []string
	for n := range names {
		if _, ok := t.ours[n]; !ok {
			stray = append(stray, n)
		}
	}
	t.mu.Unlock()
	// Outside mu: the stray entries are nobody's in this process, and
	// MkdirTemp never returns an existing name.
	var freed uint64
	var errs []error
	for _, n := range stray {
		name := filepath.Join(s.tmpDir, n)
		s.logger.Warn("removing leftover", "name", filepath.Join(tmpSubdir, n))
		size := diskUsage(name)
		if err := removeTree(name); err != nil {
			errs = append(errs, fmt.Errorf("removing leftover %s: %w", name, err))
			continue
		}
		freed += size
	}
	return freed, errors.Join(errs...)
}
