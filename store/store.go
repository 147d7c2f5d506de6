package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
)

// Options configure Open. A nil *Options means all defaults.
type Options struct {
	// Dir is the logical store directory that paths name. Zero means
	// /nix/store.
	Dir Dir
	// OnWait is called once, with the holder's pid (0 if unknown), when
	// another process has the store open and Open has to wait for it. Nil
	// means wait silently.
	OnWait func(pid int)
	// Logger receives warnings and debug messages. Nil discards them.
	Logger *slog.Logger
}

// Store is a Nix store: a backing directory holding the contents of valid
// paths, and the database saying which are valid. Only one process has a
// store open at a time; Open waits for the previous one. A Store is safe
// for concurrent use by goroutines.
type Store struct {
	*DB
	// Dir is the logical store directory.
	Dir Dir
	// Locks guard work on individual paths (builds, substitutions, adds).
	Locks *PathLocks
	// TempRoots keep paths in use alive during garbage collection.
	TempRoots TempRoots

	stateDir string
	realDir  string
	tmpDir   string
	temp     tempArea
	lock     *fileLock
	logger   *slog.Logger

	// drvHashes memoises hashDerivationModulo of .drv files in the store;
	// they are immutable, so entries never go stale.
	drvHashes sync.Map

	// gcBatchHook, set by tests only, runs before each GC batch is
	// checked and made invalid, to add roots in the window between.
	gcBatchHook func(batch []Path)

	hookMu    sync.Mutex
	onValid   []func([]Path)
	onInvalid []func([]Path)
}

// OnInvalid registers fn to be called with paths that stopped being valid
// (deleted or collected), before their contents are removed. fn must not
// block.
func (s *Store) OnInvalid(fn func([]Path)) {
	s.hookMu.Lock()
	s.onInvalid = append(s.onInvalid, fn)
	s.hookMu.Unlock()
}

func (s *Store) notifyInvalid(ps []Path) {
	s.hookMu.Lock()
	hooks := s.onInvalid
	s.hookMu.Unlock()
	for _, fn := range hooks {
		fn(ps)
	}
}

// OnValid registers fn to be called, after each successful registration,
// with the paths that became valid, whatever registered them (a build, a
// substitution, an add). fn must not block.
func (s *Store) OnValid(fn func([]Path)) {
	s.hookMu.Lock()
	s.onValid = append(s.onValid, fn)
	s.hookMu.Unlock()
}

// Layout of the state directory.
const (
	dbSubdir = "db"
	dbFile   = "storefs.db"
	lockName = "lock"
	// dirtyName marks a store that is open, or was when its process died:
	// the next Open then sweeps the backing directory for leftovers.
	dirtyName   = "dirty"
	storeSubdir = "store"
	// tmpSubdir holds everything half-made: paths being added, unpacked or
	// built, and sandbox chroots. It is inside the backing directory so
	// that finished paths are renamed into place on one filesystem, and
	// its name cannot be a store path (those start with a hash).
	tmpSubdir = ".tmp"
)

// Open opens (creating if needed) the store whose state lives in stateDir:
// the database in <stateDir>/db and valid paths' contents in
// <stateDir>/store. If another process has the store open, Open waits
// until it closes it or ctx is done. Leftovers of interrupted work are
// removed.
func Open(ctx context.Context, stateDir string, opts *Options) (*Store, error) {
	if opts == nil {
		opts = &Options{}
	}
	dir := opts.Dir
	if dir == "" {
		dir = DefaultDir
	}
	if _, err := ParseDir(string(dir)); err != nil {
		return nil, err
	}
	stateDir, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, fmt.Errorf("state directory %s: %w", stateDir, err)
	}
	s := &Store{
		Dir:      dir,
		stateDir: stateDir,
		realDir:  filepath.Join(stateDir, storeSubdir),
		logger:   opts.Logger,
	}
	if s.logger == nil {
		s.logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s.tmpDir = filepath.Join(s.realDir, tmpSubdir)
	s.Locks = &PathLocks{held: map[string]chan struct{}{}, store: s}
	for _, d := range []string{stateDir, filepath.Join(stateDir, dbSubdir), s.realDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("creating %s: %w", d, err)
		}
	}
	lockPath := filepath.Join(stateDir, dbSubdir, lockName)
	s.lock, err = lockFile(ctx, lockPath, func() {
		if opts.OnWait != nil {
			opts.OnWait(readLockPID(lockPath))
		}
	})
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", stateDir, err)
	}
	if err := s.lock.writePID(); err != nil {
		s.lock.unlock()
		return nil, fmt.Errorf("writing pid to %s: %w", lockPath, err)
	}
	// We hold the store exclusively, so nothing in the temporary area is in
	// use: it is left over from a process that died.
	if err := os.RemoveAll(s.tmpDir); err != nil {
		s.lock.unlock()
		return nil, fmt.Errorf("removing leftovers in %s: %w", s.tmpDir, err)
	}
	if err := os.Mkdir(s.tmpDir, 0o711); err != nil {
		s.lock.unlock()
		return nil, fmt.Errorf("creating %s: %w", s.tmpDir, err)
	}
	s.DB, err = openDB(filepath.Join(stateDir, dbSubdir, dbFile), dir)
	if err != nil {
		s.lock.unlock()
		return nil, err
	}
	dirty := filepath.Join(stateDir, dbSubdir, dirtyName)
	if _, err := os.Stat(dirty); err == nil {
		// The last process to hold the store died without closing it:
		// half-moved outputs, contents of paths made invalid and stale lock
		// files may be left in the backing directory.
		s.logger.Warn("the store was not closed cleanly; removing leftovers", "state", stateDir)
		if _, err := s.removeLeftovers(); err != nil {
			s.Close()
			return nil, err
		}
	} else if err := os.WriteFile(dirty, nil, 0o600); err != nil {
		s.Close()
		return nil, fmt.Errorf("marking the store open: %w", err)
	}
	return s, nil
}

// Close closes the database and releases the store for other processes.
func (s *Store) Close() error {
	err := s.DB.Close()
	if err == nil {
		os.Remove(filepath.Join(s.stateDir, dbSubdir, dirtyName))
	}
	if uerr := s.lock.unlock(); err == nil {
		err = uerr
	}
	return err
}

// StateDir is the directory holding the database, the backing store and
// other state.
func (s *Store) StateDir() string { return s.stateDir }

// RealDir is the backing directory holding valid paths' contents.
func (s *Store) RealDir() string { return s.realDir }

// RealPath is where the contents of p live.
func (s *Store) RealPath(p Path) string { return filepath.Join(s.realDir, p.Base()) }

// lockFileName is the output lock of a path, as in Nix.
func (s *Store) lockFileName(base string) string {
	return filepath.Join(s.realDir, base+".lock")
}

// ParsePath parses s as a path in this store.
func (s *Store) ParsePath(str string) (Path, error) { return s.Dir.Parse(str) }

// Register makes infos valid together, in one transaction. Their contents
// must already be in place under RealPath and canonicalised. Each
// reference must be valid or among infos. For .drv paths, the output
// index is updated from the derivation, which is parsed and checked
// first: a .drv that does not parse, or whose output paths are not the
// ones its contents give (Nix's checkDerivationOutputs), is not
// registered, so that no .drv can claim another derivation's outputs.
func (s *Store) Register(infos []*PathInfo) error {
	outputs := map[Path]map[string]Path{}
	drvs := map[Path]*Derivation{}
	for _, info := range infos {
		if info.Path.Dir() != s.Dir {
			return fmt.Errorf("registering %s: %w", info.Path, ErrInvalidPath)
		}
		if !info.Path.IsDerivation() {
			continue
		}
		drv, err := s.readDerivationFile(info.Path)
		if err != nil {
			return fmt.Errorf("registering %s: %w", info.Path, err)
		}
		drvs[info.Path] = drv
		outs := map[string]Path{}
		for name, o := range drv.Outputs {
			outs[name] = o.Path
		}
		outputs[info.Path] = outs
	}
	// Input derivations registered in this same call are not valid yet:
	// hash them from their files.
	memo := map[Path]map[string]Hash{}
	var hasher InputHasher
	hasher = func(p Path) (map[string]Hash, error) {
		d, ok := drvs[p]
		if !ok {
			return s.HashDerivationModulo(p)
		}
		if h, ok := memo[p]; ok {
			return h, nil
		}
		h, err := d.HashModulo(s.Dir, false, hasher)
		if err != nil {
			return nil, err
		}
		memo[p] = h
		return h, nil
	}
	for p, drv := range drvs {
		if err := drv.CheckOutputs(s.Dir, hasher); err != nil {
			return fmt.Errorf("registering %s: %w", p, err)
		}
	}
	if err := s.DB.register(infos, outputs); err != nil {
		return err
	}
	paths := make([]Path, len(infos))
	for i, info := range infos {
		s.logger.Debug("registered", "path", info.Path)
		paths[i] = info.Path
	}
	s.hookMu.Lock()
	hooks := s.onValid
	s.hookMu.Unlock()
	for _, fn := range hooks {
		fn(paths)
	}
	return nil
}

// ReadDerivation reads and parses a valid .drv path.
func (s *Store) ReadDerivation(p Path) (*Derivation, error) {
	ok, err := s.IsValid(p)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("reading derivation %s: %w", p, ErrNotValid)
	}
	return s.readDerivationFile(p)
}

func (s *Store) readDerivationFile(p Path) (*Derivation, error) {
	name, err := NameFromDrvPath(p)
	if err != nil {
		return nil, err
	}
	text, err := readFileLimited(s.RealPath(p), MaxDerivationSize)
	if err != nil {
		return nil, fmt.Errorf("reading derivation %s: %w", p, err)
	}
	d, err := ParseDerivation(s.Dir, text, name)
	if err != nil {
		return nil, fmt.Errorf("derivation %s: %w", p, err)
	}
	return d, nil
}

func readFileLimited(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, limit)
	}
	return b, nil
}

// HashDerivationModulo is an InputHasher over the store's valid .drv files,
// remembering results: a 200-node DAG hashes each node once.
func (s *Store) HashDerivationModulo(p Path) (map[string]Hash, error) {
	if v, ok := s.drvHashes.Load(p); ok {
		return v.(map[string]Hash), nil
	}
	d, err := s.ReadDerivation(p)
	if err != nil {
		return nil, err
	}
	h, err := d.HashModulo(s.Dir, false, s.HashDerivationModulo)
	if err != nil {
		return nil, err
	}
	s.drvHashes.Store(p, h)
	return h, nil
}

// Delete makes paths invalid and removes their contents. It refuses while
// a valid path outside ps refers to one of them. The database forgets the
// paths before their contents go, so a crash in between leaves invalid
// leftovers, never a valid path without contents.
func (s *Store) Delete(ps []Path) error {
	for _, p := range ps {
		if p.Dir() != s.Dir {
			return fmt.Errorf("deleting %s: %w", p, ErrInvalidPath)
		}
		ok, err := s.IsValid(p)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("deleting %s: %w", p, ErrNotValid)
		}
	}
	if err := s.DB.unregister(ps); err != nil {
		return err
	}
	s.notifyInvalid(ps)
	var errs []error
	for _, p := range ps {
		s.drvHashes.Delete(p)
		if err := removeTree(s.RealPath(p)); err != nil {
			errs = append(errs, fmt.Errorf("removing contents of %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}
