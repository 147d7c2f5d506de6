package store

import (
	"fmt"
	"os"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// Problem is one inconsistency Verify found.
type Problem struct {
	Path Path
	// Kind is a short tag: "missing", "modified", "stray", "dangling-reference",
	// "referrers".
	Kind    string
	Message string
}

func (p Problem) String() string { return p.Message }

// Verify checks that the database agrees with the backing directory: every
// valid path has contents, every entry on disk is valid (or a lock file or
// the temporary area), every reference is valid and the referrer edges
// match the references. With checkContents it also re-hashes every path
// and compares with its NAR hash and size.
func (s *Store) Verify(checkContents bool) ([]Problem, error) {
	var problems []Problem
	add := func(p Path, kind, format string, args ...any) {
		problems = append(problems, Problem{Path: p, Kind: kind, Message: fmt.Sprintf(format, args...)})
	}
	valid := map[string]*PathInfo{}
	edges := map[string]bool{}
	err := s.DB.bolt.View(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketPaths).ForEach(func(k, v []byte) error {
			info, err := decodePathInfo(s.Dir, string(k), v)
			if err != nil {
				return err
			}
			valid[string(k)] = info
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketReferrers).ForEach(func(k, _ []byte) error {
			edges[string(k)] = true
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("reading database: %w", err)
	}
	for base, info := range valid {
		for _, r := range info.References {
			if valid[r.Base()] == nil {
				add(info.Path, "dangling-reference", "path '%s' refers to invalid path '%s'", info.Path, r)
			}
			k := string(edgeKey(r.Base(), base))
			if !edges[k] {
				add(info.Path, "referrers", "referrer edge %s -> %s is missing", r, info.Path)
			}
			delete(edges, k)
		}
		if _, err := os.Lstat(s.RealPath(info.Path)); err != nil {
			add(info.Path, "missing", "path '%s' is valid but its contents are missing: %v", info.Path, err)
			continue
		}
		if checkContents {
			sr, err := ScanPath(s.RealPath(info.Path), nil)
			if err != nil {
				add(info.Path, "modified", "path '%s' cannot be read: %v", info.Path, err)
			} else if !sr.NARHash.Equal(info.NARHash) || sr.NARSize != info.NARSize {
				add(info.Path, "modified", "path '%s' was modified! expected hash '%s', got '%s'", info.Path, info.NARHash, sr.NARHash)
			}
		}
	}
	for k := range edges {
		a, b, _ := strings.Cut(k, "\x00")
		add(Path(string(s.Dir)+"/"+b), "referrers", "referrer edge %s -> %s has no matching reference", a, b)
	}
	entries, err := os.ReadDir(s.realDir)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", s.realDir, err)
	}
	for _, e := range entries {
		name := e.Name()
		if name == tmpSubdir || strings.HasSuffix(name, ".lock") || valid[name] != nil {
			continue
		}
		p := Path(string(s.Dir) + "/" + name)
		add(p, "stray", "'%s' in the backing store is not a valid path", s.RealPath(p))
	}
	return problems, nil
}
