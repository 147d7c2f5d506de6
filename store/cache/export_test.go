package cache

import (
	"time"

	"github.com/storefs/storefs/store"
)

// NewNARInfoCachingCacheAt is NewNARInfoCachingCache with the clock now,
// so that tests can step past the TTLs instead of waiting them out.
func NewNARInfoCachingCacheAt(c Cache, dir store.Dir, db NARInfoDB, positiveTTL, negativeTTL time.Duration, now func() time.Time) Cache {
	nc := NewNARInfoCachingCache(c, dir, db, positiveTTL, negativeTTL).(*narInfoCachingCache)
	nc.now = now
	return nc
}
