package cache_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/cache"
	"github.com/storefs/storefs/store/storetest"
)

// serveDir serves dir over HTTP on loopback, through wrap if not nil.
func serveDir(t testing.TB, dir string, wrap func(http.Handler) http.Handler) *httptest.Server {
	t.Helper()
	var h http.Handler = http.FileServer(http.Dir(dir))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// fastRetries retries quickly, so tests of failures do not wait.
func fastRetries(attempts int) *cache.Options {
	return &cache.Options{DownloadAttempts: attempts, RetryDelay: time.Millisecond, ConnectTimeout: 5 * time.Second}
}

func newHTTPCache(t testing.TB, url string, opts *cache.Options) cache.Cache {
	t.Helper()
	c, err := cache.NewHTTPCache(url, opts)
	if err != nil {
		t.Fatalf("NewHTTPCache(%s) = %v", url, err)
	}
	return c
}

func TestHTTPCache_Fixture(t *testing.T) {
	ctx := context.Background()
	srv := serveDir(t, fixtureCacheDir(t, "cache-xz"), nil)
	c := newHTTPCache(t, srv.URL+"/", nil)
	if c.URL() != srv.URL {
		t.Errorf("URL() = %s, want %s without the slash", c.URL(), srv.URL)
	}
	info, err := c.Info(ctx)
	if err != nil || info.StoreDir != "/nix/store" {
		t.Fatalf("Info() = %+v, %v", info, err)
	}
	t.Run("NotFound", func(t *testing.T) {
		_, err := c.NARInfo(ctx, "00000000000000000000000000000000")
		if !errors.Is(err, cache.ErrNotFound) || errors.Is(err, cache.ErrUnavailable) {
			t.Errorf("NARInfo() = %v, want ErrNotFound only", err)
		}
	})
	t.Run("CopyFrom", func(t *testing.T) {
		st := storetest.NewStore(t, nil)
		nis := fixtureNARInfos(t, "cache-xz")
		checked := cache.NewSignatureCheckingCache(c, fixtureKeys(t))
		roots := sampleRoots(nis)
		if err := cache.CopyFrom(ctx, st, []cache.Cache{checked}, roots, nil); err != nil {
			t.Fatalf("CopyFrom() = %v", err)
		}
		closure, err := st.Closure(roots)
		if err != nil || len(closure) < 80 {
			t.Fatalf("Closure() = %d paths, %v; want the sample's 85", len(closure), err)
		}
		for _, p := range closure {
			ni := nis[p]
			info, err := st.PathInfo(p)
			if err != nil || !info.NARHash.Equal(ni.NARHash) {
				t.Errorf("PathInfo(%s) = %v; want NAR hash %s", p, err, ni.NARHash)
			}
		}
	})
	t.Run("ReadOnly", func(t *testing.T) {
		ni := &cache.NARInfo{StorePath: hostilePath}
		if err := c.PutNARInfo(ctx, ni); !errors.Is(err, cache.ErrReadOnly) {
			t.Errorf("PutNARInfo() = %v, want ErrReadOnly", err)
		}
		if err := c.PutNAR(ctx, ni, strings.NewReader("")); !errors.Is(err, cache.ErrReadOnly) {
			t.Errorf("PutNAR() = %v, want ErrReadOnly", err)
		}
		if err := c.PutInfo(ctx, &cache.Info{}); !errors.Is(err, cache.ErrReadOnly) {
			t.Errorf("PutInfo() = %v, want ErrReadOnly", err)
		}
	})
}

func TestHTTPCache_Statuses(t *testing.T) {
	cases := []struct {
		status   int
		notFound bool
		attempts int32 // requests made with 3 attempts allowed
	}{
		{http.StatusNotFound, true, 1},
		{http.StatusForbidden, true, 1},
		{http.StatusGone, true, 1},
		{http.StatusBadRequest, false, 1},
		{http.StatusUnauthorized, false, 1},
		{http.StatusRequestTimeout, false, 3},
		{http.StatusTooManyRequests, false, 3},
		{http.StatusInternalServerError, false, 3},
		{http.StatusServiceUnavailable, false, 3},
	}
	for _, tc := range cases {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			var requests atomic.Int32
			// nix-cache-info is served, so that the status is the narinfo's.
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/nix-cache-info" {
					io.WriteString(w, "StoreDir: /nix/store\n")
					return
				}
				requests.Add(1)
				w.WriteHeader(tc.status)
			}))
			defer srv.Close()
			_, err := newHTTPCache(t, srv.URL, fastRetries(3)).NARInfo(context.Background(), "023z915q4il2a1ignka406l584flfff7")
			if got := errors.Is(err, cache.ErrNotFound); got != tc.notFound {
				t.Errorf("NARInfo() = %v; ErrNotFound %v, want %v", err, got, tc.notFound)
			}
			if got := errors.Is(err, cache.ErrUnavailable); got == tc.notFound {
				t.Errorf("NARInfo() = %v; ErrUnavailable %v, want %v", err, got, !tc.notFound)
			}
			if got := requests.Load(); got != tc.attempts {
				t.Errorf("%d requests, want %d", got, tc.attempts)
			}
		})
	}
}

func TestHTTPCache_RetryThenSuccess(t *testing.T) {
	var requests atomic.Int32
	srv := serveDir(t, fixtureCacheDir(t, "cache-zstd"), func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if requests.Add(1) <= 2 {
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	ni, err := newHTTPCache(t, srv.URL, fastRetries(3)).NARInfo(context.Background(), "023z915q4il2a1ignka406l584flfff7")
	if err != nil || ni.StorePath.HashPart() != "023z915q4il2a1ignka406l584flfff7" {
		t.Errorf("NARInfo() = %v, %v; want the narinfo on the third attempt", ni, err)
	}
	requests.Store(0)
	_, err = newHTTPCache(t, srv.URL, fastRetries(2)).NARInfo(context.Background(), "023z915q4il2a1ignka406l584flfff7")
	if !errors.Is(err, cache.ErrUnavailable) || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "2 attempts") {
		t.Errorf("NARInfo() with 2 attempts = %v, want ErrUnavailable naming the status and the attempts", err)
	}
}

// dropFirstNARs serves a cache but cuts off the first n NAR downloads
// halfway, closing the connection; later ones (Range requests included)
// are served in full.
func dropFirstNARs(n int32, ranges *atomic.Int32) func(http.Handler) http.Handler {
	var dropped atomic.Int32
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Range") != "" {
				ranges.Add(1)
			}
			if !strings.HasPrefix(r.URL.Path, "/nar/") || dropped.Add(1) > n {
				h.ServeHTTP(w, r)
				return
			}
			h.ServeHTTP(&halfWriter{ResponseWriter: w}, r)
			// Abort: the client sees the body end before Content-Length.
			panic(http.ErrAbortHandler)
		})
	}
}

// halfWriter passes on the first half of what a handler writes, as
// announced by Content-Length, and swallows the rest.
type halfWriter struct {
	http.ResponseWriter
	left int
	set  bool
}

func (w *halfWriter) Write(p []byte) (int, error) {
	if !w.set {
		w.set = true
		w.left = len(p) / 2
		if cl := w.Header().Get("Content-Length"); cl != "" {
			var n int
			for _, c := range cl {
				n = n*10 + int(c-'0')
			}
			w.left = n / 2
		}
	}
	k := min(len(p), w.left)
	w.left -= k
	if k > 0 {
		w.ResponseWriter.Write(p[:k])
		w.ResponseWriter.(http.Flusher).Flush()
	}
	return len(p), nil
}

func TestHTTPCache_DiesMidDownload(t *testing.T) {
	ctx := context.Background()
	nis := fixtureNARInfos(t, "cache-zstd")
	// The largest NAR of the cache, a source path without references.
	var big *cache.NARInfo
	for _, ni := range nis {
		if len(ni.References) == 0 && (big == nil || ni.FileSize > big.FileSize) {
			big = ni
		}
	}
	t.Run("NoRetries", func(t *testing.T) {
		var ranges atomic.Int32
		srv := serveDir(t, fixtureCacheDir(t, "cache-zstd"), dropFirstNARs(1, &ranges))
		st := storetest.NewStore(t, nil)
		err := cache.Fetch(ctx, st, newHTTPCache(t, srv.URL, fastRetries(1)), big)
		if !errors.Is(err, cache.ErrUnavailable) {
			t.Errorf("Fetch() = %v, want ErrUnavailable", err)
		}
		checkInvalid(t, st, big.StorePath)
		checkNoTemporaries(t, st)
	})
	t.Run("Resumes", func(t *testing.T) {
		var ranges atomic.Int32
		srv := serveDir(t, fixtureCacheDir(t, "cache-zstd"), dropFirstNARs(1, &ranges))
		st := storetest.NewStore(t, nil)
		if err := cache.Fetch(ctx, st, newHTTPCache(t, srv.URL, fastRetries(3)), big); err != nil {
			t.Fatalf("Fetch() = %v, want the download resumed", err)
		}
		if ranges.Load() != 1 {
			t.Errorf("%d Range requests, want 1", ranges.Load())
		}
	})
	t.Run("ServerGone", func(t *testing.T) {
		srv := serveDir(t, fixtureCacheDir(t, "cache-zstd"), nil)
		c := newHTTPCache(t, srv.URL, fastRetries(3))
		srv.Close()
		st := storetest.NewStore(t, nil)
		err := cache.Fetch(ctx, st, c, big)
		if !errors.Is(err, cache.ErrUnavailable) || !strings.Contains(err.Error(), "3 attempts") {
			t.Errorf("Fetch() = %v, want ErrUnavailable after 3 attempts", err)
		}
		checkInvalid(t, st, big.StorePath)
		checkNoTemporaries(t, st)
	})
}

func TestHTTPCache_Cancel(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := newHTTPCache(t, srv.URL, nil).NARInfo(ctx, "023z915q4il2a1ignka406l584flfff7")
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, cache.ErrUnavailable) {
		t.Errorf("NARInfo() = %v, want the context's error only", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("NARInfo() returned after %s, want soon after the deadline", d)
	}
}

func TestHTTPCache_Stalled(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.Write([]byte("StorePath: "))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	opts := fastRetries(2)
	opts.StallTimeout = 50 * time.Millisecond
	_, err := newHTTPCache(t, srv.URL, opts).NARInfo(context.Background(), "023z915q4il2a1ignka406l584flfff7")
	if !errors.Is(err, cache.ErrUnavailable) || !strings.Contains(err.Error(), "no data for 50ms") {
		t.Errorf("NARInfo() = %v, want ErrUnavailable after stalling", err)
	}
}

func TestNewHTTPCache_BadURL(t *testing.T) {
	for _, u := range []string{"ftp://host/", "http://", "/nix/store", "file:///tmp"} {
		if _, err := cache.NewHTTPCache(u, nil); err == nil {
			t.Errorf("NewHTTPCache(%s) = nil, want an error", u)
		}
	}
}

func TestHTTPCache_NARURL(t *testing.T) {
	srv := serveDir(t, fixtureCacheDir(t, "cache-zstd"), nil)
	c := newHTTPCache(t, srv.URL+"/sub", nil)
	for _, u := range []string{"../nar/x.nar", "/etc/passwd", "file:///etc/passwd"} {
		ni := &cache.NARInfo{StorePath: hostilePath, URL: u, Compression: "none", NARHash: store.HashString(store.SHA256, ""), NARSize: 1}
		if r, err := c.NAR(context.Background(), ni); err == nil {
			r.Close()
			t.Errorf("NAR(URL %q) = nil, want a refusal", u)
		}
	}
}
