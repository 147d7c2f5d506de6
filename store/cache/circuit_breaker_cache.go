package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"
)

// DefaultOpenFor is how long a circuit breaker skips a cache after it
// failed: long enough that a closure of hundreds of paths does not wait
// for a dead cache's retries for each of them, short enough that a cache
// back after a restart is used again within the minute.
const DefaultOpenFor = 60 * time.Second

// CircuitBreakerOptions configure NewCircuitBreakerCache. A nil
// *CircuitBreakerOptions means all defaults.
type CircuitBreakerOptions struct {
	// OpenFor is how long the cache fails fast after a failure. Zero
	// means DefaultOpenFor.
	OpenFor time.Duration
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Logger gets a warning when the cache is found down and a message
	// when it is back. Nil discards them.
	Logger *slog.Logger
}

// circuitBreakerCache stops asking a cache that is down.
type circuitBreakerCache struct {
	Cache
	openFor time.Duration
	now     func() time.Time
	logger  *slog.Logger

	mu    sync.Mutex
	down  bool      // a failure was seen, and no answer since
	until time.Time // while down, calls fail fast before this
	cause error     // the failure that made the cache down
}

// NewCircuitBreakerCache returns c guarded by a circuit breaker. Once a
// call fails with ErrUnavailable (the cache cannot be reached, or
// answers with a server error after its retries; not a missing path),
// every call of Info, NARInfo and NAR fails at once with ErrUnavailable
// for OpenFor, naming the failure, instead of failing slowly for each
// path, which is what Nix does with a dead substituter. Then one call
// is let through: if the cache answers (a narinfo, or ErrNotFound) it is
// used again, otherwise it is skipped for another OpenFor. A warning is
// logged once per outage.
func NewCircuitBreakerCache(c Cache, opts *CircuitBreakerOptions) Cache {
	cb := &circuitBreakerCache{Cache: c, openFor: DefaultOpenFor, now: time.Now}
	if opts != nil {
		if opts.OpenFor > 0 {
			cb.openFor = opts.OpenFor
		}
		if opts.Now != nil {
			cb.now = opts.Now
		}
		cb.logger = opts.Logger
	}
	if cb.logger == nil {
		cb.logger = discardLogger()
	}
	return cb
}

// allow returns an error while the cache is to be skipped. When the
// skipping time is over it lets one call through as a probe and keeps
// skipping for the others until that call is done.
func (c *circuitBreakerCache) allow() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.down {
		return nil
	}
	now := c.now()
	if now.Before(c.until) {
		return &unavailableError{fmt.Errorf("skipping binary cache '%s' for %s after a failure: %w",
			c.URL(), c.until.Sub(now).Round(time.Second), c.cause)}
	}
	c.until = now.Add(c.openFor)
	return nil
}

// record notes the outcome of a call.
func (c *circuitBreakerCache) record(err error) {
	up := err == nil || errors.Is(err, ErrNotFound)
	if !up && !errors.Is(err, ErrUnavailable) {
		// Bad data or a cancelled call says nothing about the cache.
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if up {
		if c.down {
			c.down, c.cause = false, nil
			c.logger.Info("binary cache is back", "substituter", c.URL())
		}
		return
	}
	if !c.down {
		c.logger.Warn("binary cache failed; skipping it", "substituter", c.URL(), "for", c.openFor, "err", err)
	}
	c.down, c.until, c.cause = true, c.now().Add(c.openFor), err
}

func (c *circuitBreakerCache) Info(ctx context.Context) (*Info, error) {
	if err := c.allow(); err != nil {
		return nil, err
	}
	info, err := c.Cache.Info(ctx)
	c.record(err)
	return info, err
}

func (c *circuitBreakerCache) NARInfo(ctx context.Context, hashPart string) (*NARInfo, error) {
	if err := c.allow(); err != nil {
		return nil, err
	}
	ni, err := c.Cache.NARInfo(ctx, hashPart)
	c.record(err)
	return ni, err
}

func (c *circuitBreakerCache) NAR(ctx context.Context, ni *NARInfo) (io.ReadCloser, error) {
	if err := c.allow(); err != nil {
		return nil, err
	}
	rc, err := c.Cache.NAR(ctx, ni)
	c.record(err)
	if err != nil {
		return nil, err
	}
	return &breakerStream{ReadCloser: rc, cb: c}, nil
}

// breakerStream records a download that fails midway.
type breakerStream struct {
	io.ReadCloser
	cb *circuitBreakerCache
}

func (s *breakerStream) Read(p []byte) (int, error) {
	n, err := s.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		s.cb.record(err)
	}
	return n, err
}
