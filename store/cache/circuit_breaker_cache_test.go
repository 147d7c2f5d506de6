package cache_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/cache"
	"github.com/storefs/storefs/store/storetest"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// lockedBuffer is a log destination for concurrent writers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// flakyServer serves the zstd fixture cache, or 503 for every request
// while down is set, counting requests.
type flakyServer struct {
	*httptest.Server
	down     atomic.Bool
	requests atomic.Int32
}

func newFlakyServer(t testing.TB) *flakyServer {
	t.Helper()
	s := &flakyServer{}
	files := http.FileServer(http.Dir(fixtureCacheDir(t, "cache-zstd")))
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if s.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func TestCircuitBreakerCache_FailsFast(t *testing.T) {
	ctx := context.Background()
	srv := newFlakyServer(t)
	srv.down.Store(true)
	clock := &fakeClock{now: time.Unix(1000, 0)}
	var logs lockedBuffer
	c := cache.NewCircuitBreakerCache(newHTTPCache(t, srv.URL, fastRetries(2)), &cache.CircuitBreakerOptions{
		OpenFor: time.Minute,
		Now:     clock.Now,
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
	})
	nis := fixtureNARInfos(t, "cache-zstd")

	// The first failure costs its retries.
	if _, err := c.NARInfo(ctx, "023z915q4il2a1ignka406l584flfff7"); !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("NARInfo() = %v, want ErrUnavailable", err)
	}
	if got := srv.requests.Load(); got != 2 {
		t.Fatalf("%d requests for the first lookup, want 2 (the attempts)", got)
	}

	// Then every path fails at once, without a request.
	var wg sync.WaitGroup
	for p := range nis {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.NARInfo(ctx, p.HashPart())
			if !errors.Is(err, cache.ErrUnavailable) || !strings.Contains(err.Error(), "skipping binary cache '"+srv.URL+"' for 1m0s after a failure") ||
				!strings.Contains(err.Error(), "503") {
				t.Errorf("NARInfo(%s) = %v, want a fast failure naming the cause", p, err)
			}
		}()
	}
	wg.Wait()
	if _, err := c.NAR(ctx, nis["/nix/store/023z915q4il2a1ignka406l584flfff7-chain-20"]); !errors.Is(err, cache.ErrUnavailable) {
		t.Errorf("NAR() = %v, want ErrUnavailable", err)
	}
	if _, err := c.Info(ctx); !errors.Is(err, cache.ErrUnavailable) {
		t.Errorf("Info() = %v, want ErrUnavailable", err)
	}
	if got := srv.requests.Load(); got != 2 {
		t.Errorf("%d requests after the cache failed, want none more", got-2)
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, logs.String())
	}

	// After OpenFor, one call probes; the cache is still down.
	clock.Advance(time.Minute)
	if _, err := c.NARInfo(ctx, "023z915q4il2a1ignka406l584flfff7"); !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("NARInfo() = %v, want ErrUnavailable", err)
	}
	if got := srv.requests.Load(); got != 4 {
		t.Errorf("%d requests after the probe, want 4", got)
	}
	if _, err := c.NARInfo(ctx, "023z915q4il2a1ignka406l584flfff7"); err == nil || !strings.Contains(err.Error(), "skipping") {
		t.Errorf("NARInfo() after a failed probe = %v, want a fast failure", err)
	}

	// Back up: the next probe succeeds and the cache is used again.
	srv.down.Store(false)
	clock.Advance(time.Minute)
	st := storetest.NewStore(t, nil)
	if err := cache.CopyFrom(ctx, st, []cache.Cache{c}, []store.Path{"/nix/store/023z915q4il2a1ignka406l584flfff7-chain-20"}, nil); err != nil {
		t.Fatalf("CopyFrom() once the cache is back = %v", err)
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "binary cache is back") {
		t.Errorf("logs do not say the cache is back:\n%s", logs.String())
	}
}

func TestCircuitBreakerCache_NotFoundIsNoFailure(t *testing.T) {
	ctx := context.Background()
	srv := newFlakyServer(t)
	c := cache.NewCircuitBreakerCache(newHTTPCache(t, srv.URL, fastRetries(2)), nil)
	for i := 0; i < 3; i++ {
		if _, err := c.NARInfo(ctx, "00000000000000000000000000000000"); !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("NARInfo() = %v, want ErrNotFound", err)
		}
	}
	// One for nix-cache-info, which the cache reads once, and one per lookup.
	if got := srv.requests.Load(); got != 4 {
		t.Errorf("%d requests, want 4: a missing path must not trip the breaker", got)
	}
}

func TestCircuitBreakerCache_DeadServer(t *testing.T) {
	ctx := context.Background()
	srv := newFlakyServer(t)
	opts := fastRetries(5)
	opts.RetryDelay = 20 * time.Millisecond
	c := cache.NewCircuitBreakerCache(newHTTPCache(t, srv.URL, opts), nil)
	srv.Close()
	start := time.Now()
	if _, err := c.NARInfo(ctx, "023z915q4il2a1ignka406l584flfff7"); !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("NARInfo() = %v, want ErrUnavailable", err)
	}
	first := time.Since(start)
	// A closure of the whole cache now fails at once.
	st := storetest.NewStore(t, nil)
	start = time.Now()
	nis := fixtureNARInfos(t, "cache-zstd")
	err := cache.CopyFrom(ctx, st, []cache.Cache{c}, fixtureRoots(nis), nil)
	if !errors.Is(err, cache.ErrUnavailable) || !strings.Contains(err.Error(), "skipping") {
		t.Errorf("CopyFrom() = %.200v, want fast failures", err)
	}
	if rest := time.Since(start); rest > first {
		t.Errorf("CopyFrom() of %d paths took %s, more than the one lookup that found the cache dead (%s)", len(fixtureRoots(nis)), rest, first)
	}
}

func TestCircuitBreakerCache_BrokenDownload(t *testing.T) {
	ctx := context.Background()
	var ranges atomic.Int32
	srv := serveDir(t, fixtureCacheDir(t, "cache-zstd"), dropFirstNARs(100, &ranges))
	c := cache.NewCircuitBreakerCache(newHTTPCache(t, srv.URL, fastRetries(1)), nil)
	ni, err := c.NARInfo(ctx, "71fc7s32zl20dc955bhghy5dvalm7ndz")
	if err != nil {
		t.Fatal(err)
	}
	st := storetest.NewStore(t, nil)
	if err := cache.Fetch(ctx, st, c, ni); !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("Fetch() = %v, want ErrUnavailable", err)
	}
	if _, err := c.NARInfo(ctx, "71fc7s32zl20dc955bhghy5dvalm7ndz"); err == nil || !strings.Contains(err.Error(), "skipping") {
		t.Errorf("NARInfo() after a broken download = %v, want a fast failure", err)
	}
}
