package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/storefs/storefs/store/nar"
)

// countingWriter counts the bytes written through it.
type countingWriter struct{ n uint64 }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += uint64(len(p))
	return len(p), nil
}

// ScanResult is what one pass over a tree's NAR serialisation tells.
type ScanResult struct {
	NARHash Hash
	NARSize uint64
	// Found holds the candidate hash parts that occur in the tree.
	Found map[string]struct{}
}

// ScanPath dumps the tree at name as a NAR and, in the same pass, hashes it
// (SHA-256), counts its size and looks for the given hash parts.
func ScanPath(name string, hashParts []string) (*ScanResult, error) {
	h := sha256.New()
	var n countingWriter
	var w io.Writer = io.MultiWriter(h, &n)
	var scanner *RefScanner
	if len(hashParts) > 0 {
		scanner = NewRefScanner(hashParts)
		w = io.MultiWriter(h, &n, scanner)
	}
	if err := nar.Dump(w, name); err != nil {
		return nil, err
	}
	r := &ScanResult{NARHash: Hash{Algo: SHA256, Digest: h.Sum(nil)}, NARSize: n.n, Found: map[string]struct{}{}}
	if scanner != nil {
		r.Found = scanner.Found()
	}
	return r, nil
}

// AddPath adds the file or directory src as a source path, like
// `nix-store --add` and builtins.path: the path is the fixed-output path of
// the recursive SHA-256 of its NAR, with no references. name defaults to
// src's base name. The contents are copied into the store's temporary area
// and renamed into place before the path is registered.
func (s *Store) AddPath(ctx context.Context, src, name string) (Path, error) {
	if name == "" {
		name = filepath.Base(filepath.Clean(src))
	}
	if err := CheckName(name); err != nil {
		return "", fmt.Errorf("adding %s: %w", src, err)
	}
	tmp, err := s.MkdirTemp("add-")
	if err != nil {
		return "", err
	}
	defer removeTree(tmp)
	tree := filepath.Join(tmp, "tree")

	// Dump and restore in one pass, hashing the stream in between, so the
	// hash is of exactly what was copied even if src changes meanwhile.
	pr, pw := io.Pipe()
	dumped := make(chan error, 1)
	go func() {
		err := nar.Dump(pw, src)
		pw.CloseWithError(err)
		dumped <- err
	}()
	h := sha256.New()
	var n countingWriter
	rerr := nar.Restore(io.TeeReader(pr, io.MultiWriter(h, &n)), tree)
	pr.CloseWithError(errors.New("restore ended"))
	if derr := <-dumped; derr != nil {
		return "", fmt.Errorf("adding %s: %w", src, derr)
	}
	if rerr != nil {
		return "", fmt.Errorf("adding %s: %w", src, rerr)
	}
	narHash := Hash{Algo: SHA256, Digest: h.Sum(nil)}
	p, err := s.Dir.MakeFixedOutputPath(name, true, narHash, nil, false)
	if err != nil {
		return "", err
	}
	info := &PathInfo{
		Path:    p,
		NARHash: narHash,
		NARSize: n.n,
		CA:      FixedCA(true, narHash),
	}
	return p, s.AddTree(ctx, tree, info)
}

// AddText adds a text file (like builtins.toFile, or a .drv) with the given
// references, which must be valid.
func (s *Store) AddText(ctx context.Context, name string, contents []byte, refs []Path) (Path, error) {
	h := HashBytes(SHA256, contents)
	p, err := s.Dir.MakeTextPath(name, h, refs)
	if err != nil {
		return "", fmt.Errorf("adding text %s: %w", name, err)
	}
	if ok, err := s.IsValid(p); err != nil || ok {
		return p, err
	}
	tmp, err := s.MkdirTemp("text-")
	if err != nil {
		return "", err
	}
	defer removeTree(tmp)
	file := filepath.Join(tmp, "file")
	if err := os.WriteFile(file, contents, 0o444); err != nil {
		return "", fmt.Errorf("adding text %s: %w", name, err)
	}
	sr, err := ScanPath(file, nil)
	if err != nil {
		return "", fmt.Errorf("adding text %s: %w", name, err)
	}
	info := &PathInfo{
		Path:       p,
		NARHash:    sr.NARHash,
		NARSize:    sr.NARSize,
		References: refs,
		CA:         TextCA(h),
	}
	return p, s.AddTree(ctx, file, info)
}

// AddTree makes the tree at tmp (in the store's temporary area) the
// contents of info.Path and registers it: it takes the path's lock,
// returns at once if someone made the path valid meanwhile, canonicalises
// tmp, renames it into place and registers info (with the current time as
// registration time unless set). tmp is consumed on success.
func (s *Store) AddTree(ctx context.Context, tmp string, info *PathInfo) error {
	lock, err := s.Locks.Lock(ctx, []Path{info.Path})
	if err != nil {
		return err
	}
	defer lock.Unlock()
	if ok, err := s.IsValid(info.Path); err != nil || ok {
		return err
	}
	if err := s.MoveIntoPlace(tmp, info.Path); err != nil {
		return err
	}
	if info.RegistrationTime.IsZero() {
		info.RegistrationTime = time.Now()
	}
	if err := s.Register([]*PathInfo{info}); err != nil {
		// Not valid, so nobody uses the contents: take them back out.
		if rerr := removeTree(s.RealPath(info.Path)); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	return nil
}

// MoveIntoPlace canonicalises tmp and renames it to p's real path,
// replacing an invalid leftover there. The caller holds p's lock and has
// checked that p is not valid.
func (s *Store) MoveIntoPlace(tmp string, p Path) error {
	if err := Canonicalise(tmp); err != nil {
		return fmt.Errorf("canonicalising %s: %w", p, err)
	}
	return s.RenameIntoPlace(tmp, p)
}

// RenameIntoPlace is MoveIntoPlace for a tree that is canonical already.
func (s *Store) RenameIntoPlace(tmp string, p Path) error {
	real := s.RealPath(p)
	if _, err := os.Lstat(real); err == nil {
		s.logger.Warn("removing invalid leftover", "path", p)
		if err := removeTree(real); err != nil {
			return fmt.Errorf("removing invalid leftover %s: %w", real, err)
		}
	}
	if err := os.Rename(tmp, real); err != nil {
		return fmt.Errorf("moving %s into place: %w", p, err)
	}
	return nil
}

// ReplaceValid swaps the canonical tree at tmp in as the contents of the
// valid path p (for --repair), and removes the old contents. tmp must be
// in the store's temporary area; it is consumed.
//
// The two names are exchanged in one step (renameat2 RENAME_EXCHANGE), so
// p's real path has contents at every moment, whatever kills us: the old
// tree then sits at tmp, in the temporary area, until it is removed here
// or at the next Open. Only when the filesystem cannot exchange (EINVAL)
// does it fall back to two renames, moving the old contents aside first:
// a crash between them leaves p valid without contents (verify reports
// it missing, and --repair fixes it), which is why that is the fallback.
func (s *Store) ReplaceValid(tmp string, p Path) error {
	real := s.RealPath(p)
	if _, err := os.Lstat(real); errors.Is(err, os.ErrNotExist) {
		// Nothing to keep in place: the contents are missing already.
		if err := os.Rename(tmp, real); err != nil {
			return fmt.Errorf("replacing %s: %w", p, err)
		}
		return nil
	}
	err := exchange(tmp, real)
	if err == nil {
		// tmp now holds the old contents.
		if err := removeTree(tmp); err != nil {
			return fmt.Errorf("removing old contents of %s: %w", p, err)
		}
		return nil
	}
	if !errors.Is(err, errNoExchange) {
		return fmt.Errorf("replacing %s: %w", p, err)
	}
	s.logger.Debug("no atomic exchange; replacing in two renames", "path", p)
	old, err := s.MkdirTemp("old-")
	if err != nil {
		return fmt.Errorf("replacing %s: %w", p, err)
	}
	aside := filepath.Join(old, p.Base())
	if err := os.Rename(real, aside); err != nil && !errors.Is(err, os.ErrNotExist) {
		removeTree(old)
		return fmt.Errorf("replacing %s: %w", p, err)
	}
	if err := os.Rename(tmp, real); err != nil {
		os.Rename(aside, real)
		removeTree(old)
		return fmt.Errorf("replacing %s: %w", p, err)
	}
	return removeTree(old)
}

// HashTree hashes the file or tree at name as Nix's content addresses do:
// its NAR serialisation when recursive (nix-hash), else the contents of
// the regular file (nix-hash --flat).
func HashTree(name string, algo HashAlgo, recursive bool) (Hash, error) {
	h := algo.New()
	if recursive {
		if err := nar.Dump(h, name); err != nil {
			return Hash{}, err
		}
		return Hash{Algo: algo, Digest: h.Sum(nil)}, nil
	}
	fi, err := os.Lstat(name)
	if err != nil {
		return Hash{}, err
	}
	if !fi.Mode().IsRegular() {
		return Hash{}, fmt.Errorf("'%s' is not a regular file, so it has no flat hash", name)
	}
	f, err := os.Open(name)
	if err != nil {
		return Hash{}, err
	}
	defer f.Close()
	if _, err := io.Copy(h, f); err != nil {
		return Hash{}, fmt.Errorf("reading %s: %w", name, err)
	}
	return Hash{Algo: algo, Digest: h.Sum(nil)}, nil
}
