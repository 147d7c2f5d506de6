package cache_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/cache"
	"github.com/storefs/storefs/store/storetest"
)

// testClock is a clock that moves only when told.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// narInfoServer serves the zstd fixture cache over HTTP on loopback,
// counting the requests for each narinfo, and answering 503 for the hash
// parts in failing.
type narInfoServer struct {
	url     string
	mu      sync.Mutex
	asked   map[string]int
	failing sync.Map
}

func newNARInfoServer(t testing.TB) *narInfoServer {
	s := &narInfoServer{asked: map[string]int{}}
	srv := serveDir(t, fixtureCacheDir(t, "cache-zstd"), func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if hashPart, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/"), ".narinfo"); ok {
				s.mu.Lock()
				s.asked[hashPart]++
				s.mu.Unlock()
				if _, ok := s.failing.Load(hashPart); ok {
					http.Error(w, "down", http.StatusServiceUnavailable)
					return
				}
			}
			h.ServeHTTP(w, r)
		})
	})
	s.url = srv.URL
	return s
}

// requests is how many times the narinfo of hashPart was asked for.
func (s *narInfoServer) requests(hashPart string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.asked[hashPart]
}

// TestNARInfoCachingCache checks that narinfo answers are remembered, in
// memory and in the store's database, for narinfo-cache-positive-ttl
// when the cache had the path and narinfo-cache-negative-ttl when it did
// not, and asked for again once that is over; failures are not
// remembered.
func TestNARInfoCachingCache(t *testing.T) {
	ctx := context.Background()
	const (
		positiveTTL = time.Hour
		negativeTTL = time.Minute
		// A path of the fixture cache and a hash part it does not have.
		present = store.Path("/nix/store/ib5ymw26pl1q7iw9qn4f4z7d730pkw69-leaf")
		missing = "00000000000000000000000000000000"
	)
	st := storetest.NewStore(t, nil)
	srv := newNARInfoServer(t)
	clock := &testClock{t: time.Unix(1_700_000_000, 0)}
	newCache := func() cache.Cache {
		return cache.NewNARInfoCachingCacheAt(newHTTPCache(t, srv.url, fastRetries(1)), st.Dir, st.DB, positiveTTL, negativeTTL, clock.Now)
	}
	c := newCache()
	lookup := func(c cache.Cache, hashPart string, wantRequests int) (*cache.NARInfo, error) {
		t.Helper()
		ni, err := c.NARInfo(ctx, hashPart)
		if got := srv.requests(hashPart); got != wantRequests {
			t.Errorf("%d requests for %s, want %d", got, hashPart, wantRequests)
		}
		return ni, err
	}
	wantPresent := func(ni *cache.NARInfo, err error) {
		t.Helper()
		if err != nil || ni.StorePath != present {
			t.Errorf("NARInfo(%s) = %v, %v; want its narinfo", present.HashPart(), ni, err)
		}
	}
	wantMissing := func(_ *cache.NARInfo, err error) {
		t.Helper()
		if !errors.Is(err, cache.ErrNotFound) {
			t.Errorf("NARInfo(%s) = %v, want ErrNotFound", missing, err)
		}
	}

	t.Run("Positive", func(t *testing.T) {
		// Asked once, then remembered until the positive TTL is over.
		wantPresent(lookup(c, present.HashPart(), 1))
		clock.Advance(positiveTTL - time.Second)
		wantPresent(lookup(c, present.HashPart(), 1))
		clock.Advance(2 * time.Second)
		wantPresent(lookup(c, present.HashPart(), 2))
		wantPresent(lookup(c, present.HashPart(), 2))
	})
	t.Run("Negative", func(t *testing.T) {
		// Asked once, then remembered for the shorter negative TTL only.
		wantMissing(lookup(c, missing, 1))
		clock.Advance(negativeTTL - time.Second)
		wantMissing(lookup(c, missing, 1))
		clock.Advance(2 * time.Second)
		wantMissing(lookup(c, missing, 2))
		wantMissing(lookup(c, missing, 2))
	})
	t.Run("Database", func(t *testing.T) {
		// A new decorator over the same database, as in the next
		// process, has the answers of the last without asking.
		c2 := newCache()
		wantPresent(lookup(c2, present.HashPart(), 2))
		wantMissing(lookup(c2, missing, 2))
		clock.Advance(negativeTTL + time.Second)
		wantPresent(lookup(c2, present.HashPart(), 2))
		wantMissing(lookup(c2, missing, 3))
		clock.Advance(positiveTTL)
		wantPresent(lookup(c2, present.HashPart(), 3))
	})
	t.Run("FailureNotRemembered", func(t *testing.T) {
		// A cache that fails is asked again at the next lookup, and
		// its answer then is remembered.
		const chain = "023z915q4il2a1ignka406l584flfff7"
		srv.failing.Store(chain, true)
		if _, err := lookup(c, chain, 1); err == nil || errors.Is(err, cache.ErrNotFound) {
			t.Errorf("NARInfo(failing) = %v, want a failure", err)
		}
		srv.failing.Delete(chain)
		if ni, err := lookup(c, chain, 2); err != nil || ni.StorePath.HashPart() != chain {
			t.Errorf("NARInfo(%s) once the cache answers = %v, %v", chain, ni, err)
		}
		if _, err := lookup(c, chain, 2); err != nil {
			t.Errorf("NARInfo(%s) remembered = %v", chain, err)
		}
	})
}
