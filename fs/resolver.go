package fs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/storefs/storefs/store"
)

// Realiser is what the filesystem needs from the build worker.
type Realiser interface {
	// Knows reports whether p is valid or can be realised.
	Knows(ctx context.Context, p store.Path) (bool, error)
	// RealisePath makes p valid, waiting until it is or ctx is done.
	RealisePath(ctx context.Context, p store.Path) error
}

// Validator is what the filesystem needs from the store.
type Validator interface {
	IsValid(p store.Path) (bool, error)
}

// Errors of Resolve. errno maps them to the kernel's.
var (
	// ErrNotStorePath is returned when a name in the store root cannot be
	// a store path at all.
	ErrNotStorePath = errors.New("not a store path name")
	// ErrUnknown is returned when a store path is neither valid nor known
	// to any derivation or substituter.
	ErrUnknown = errors.New("no derivation or substituter provides this path")
)

// RealiseError is returned when realising a path failed; it is
// remembered for a while so that a loop of lookups does not rebuild
// endlessly.
type RealiseError struct {
	Path store.Path
	Err  error
	At   time.Time
}

func (e *RealiseError) Error() string { return fmt.Sprintf("realising %s: %v", e.Path, e.Err) }
func (e *RealiseError) Unwrap() error { return e.Err }

// Resolver decides what a lookup of a name in the store root means: valid
// (serve it), realisable (realise it and wait), or unknown. It knows
// nothing of FUSE, so another front end could use it. It is safe for
// concurrent use; concurrent lookups of one path share one goal in the
// worker.
type Resolver struct {
	dir      store.Dir
	valid    Validator
	realiser Realiser
	failTTL  time.Duration
	hold     func(store.Path) (release func())

	mu       sync.Mutex
	failures map[store.Path]*RealiseError
}

// NewResolver returns a resolver for store directory dir. Failures are
// remembered for failTTL (zero: not at all). hold, if not nil, keeps a
// path alive (a temporary GC root) while a lookup realises it.
func NewResolver(dir store.Dir, valid Validator, realiser Realiser, failTTL time.Duration, hold func(store.Path) (release func())) *Resolver {
	return &Resolver{dir: dir, valid: valid, realiser: realiser, failTTL: failTTL, hold: hold, failures: map[store.Path]*RealiseError{}}
}

// Resolve makes the store path named name valid if it can. It returns nil
// when the path is valid, ErrNotStorePath, ErrUnknown, a *RealiseError,
// or ctx's error when the caller was interrupted.
func (r *Resolver) Resolve(ctx context.Context, name string) error {
	p, err := r.dir.ParseBase(name)
	if err != nil {
		return ErrNotStorePath
	}
	if ok, err := r.valid.IsValid(p); err != nil {
		return err
	} else if ok {
		return nil
	}
	r.mu.Lock()
	f := r.failures[p]
	if f != nil && time.Since(f.At) >= r.failTTL {
		delete(r.failures, p)
		f = nil
	}
	r.mu.Unlock()
	if f != nil {
		return f
	}
	if r.hold != nil {
		defer r.hold(p)()
	}
	known, err := r.realiser.Knows(ctx, p)
	if err != nil {
		return err
	}
	if !known {
		return ErrUnknown
	}
	err = r.realiser.RealisePath(ctx, p)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	f = &RealiseError{Path: p, Err: err, At: time.Now()}
	if r.failTTL > 0 {
		r.mu.Lock()
		r.failures[p] = f
		r.mu.Unlock()
	}
	return f
}

// Forget drops a remembered failure, for example once the path became
// valid by another route.
func (r *Resolver) Forget(p store.Path) {
	r.mu.Lock()
	delete(r.failures, p)
	r.mu.Unlock()
}
