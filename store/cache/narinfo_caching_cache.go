package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/storefs/storefs/store"
)

// NARInfoDB persists narinfo answers; *store.DB is one.
type NARInfoDB interface {
	CachedNARInfo(cacheURL, hashPart string) (data []byte, found bool, at time.Time, ok bool, err error)
	CacheNARInfo(cacheURL, hashPart string, data []byte, found bool, at time.Time) error
}

// narInfoCachingCache remembers a cache's narinfo answers, in memory and
// in the database, for narinfo-cache-positive-ttl (the cache had the
// path) and narinfo-cache-negative-ttl (it did not): a lookup in the
// mount of a name no one has must not ask the network every time.
type narInfoCachingCache struct {
	Cache
	dir         store.Dir
	db          NARInfoDB
	positiveTTL time.Duration
	negativeTTL time.Duration
	now         func() time.Time // time.Now; tests turn it

	mu  sync.Mutex
	mem map[string]narInfoAnswer
}

type narInfoAnswer struct {
	ni *NARInfo // nil: not found
	at time.Time
}

// NewNARInfoCachingCache decorates c with remembered narinfo answers.
// Errors other than ErrNotFound are never remembered.
func NewNARInfoCachingCache(c Cache, dir store.Dir, db NARInfoDB, positiveTTL, negativeTTL time.Duration) Cache {
	return &narInfoCachingCache{Cache: c, dir: dir, db: db, positiveTTL: positiveTTL, negativeTTL: negativeTTL, now: time.Now, mem: map[string]narInfoAnswer{}}
}

func (c *narInfoCachingCache) fresh(a narInfoAnswer) bool {
	ttl := c.negativeTTL
	if a.ni != nil {
		ttl = c.positiveTTL
	}
	return c.now().Sub(a.at) < ttl
}

func (c *narInfoCachingCache) NARInfo(ctx context.Context, hashPart string) (*NARInfo, error) {
	c.mu.Lock()
	a, ok := c.mem[hashPart]
	c.mu.Unlock()
	if !ok {
		data, found, at, known, err := c.db.CachedNARInfo(c.URL(), hashPart)
		if err != nil {
			return nil, err
		}
		if known {
			a, ok = narInfoAnswer{at: at}, true
			if found {
				// A remembered narinfo that no longer parses is
				// forgotten and asked for again.
				if a.ni, err = ParseNARInfo(c.dir, data); err != nil {
					ok = false
				}
			}
		}
	}
	if ok && c.fresh(a) {
		if a.ni == nil {
			return nil, fmt.Errorf("%s has no narinfo for %s (remembered): %w", c.URL(), hashPart, ErrNotFound)
		}
		return a.ni, nil
	}
	ni, err := c.Cache.NARInfo(ctx, hashPart)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	a = narInfoAnswer{ni: ni, at: c.now()}
	c.mu.Lock()
	c.mem[hashPart] = a
	c.mu.Unlock()
	var data []byte
	if ni != nil {
		data = []byte(ni.String())
	}
	if perr := c.db.CacheNARInfo(c.URL(), hashPart, data, ni != nil, a.at); perr != nil {
		return nil, fmt.Errorf("remembering the narinfo of %s: %w", hashPart, perr)
	}
	return ni, err
}
