package cache

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"path"
	"strings"
)

// Cache is one binary cache. Implementations talk to a cache (NewFileCache,
// NewHTTPCache) or decorate another Cache (NewSignatureCheckingCache,
// NewSigningCache, NewCircuitBreakerCache). All are safe for concurrent
// use.
type Cache interface {
	// URL is the cache's URL, as messages name it (file:///dir,
	// https://host), without query parameters.
	URL() string

	// Info returns the cache's nix-cache-info, with the overrides of its
	// URL's parameters. It fails when the cache is for another store
	// directory, and returns ErrNotFound when the cache has no
	// nix-cache-info (a new, empty cache).
	Info(ctx context.Context) (*Info, error)

	// NARInfo returns the narinfo of the path with hash part hashPart,
	// or ErrNotFound. The narinfo names a path with that hash part. Like
	// NAR, it fails, naming both store directories, when the cache's
	// nix-cache-info is for another store directory (read once per
	// cache; a cache without one is for ours).
	NARInfo(ctx context.Context, hashPart string) (*NARInfo, error)

	// NAR returns the NAR that ni describes, decompressed, as a stream
	// the caller must close. It does not check the NAR against ni: Fetch
	// does.
	NAR(ctx context.Context, ni *NARInfo) (io.ReadCloser, error)

	// PutNAR stores the uncompressed NAR read from r, compressed as the
	// cache is configured, and sets ni's URL, Compression, FileHash and
	// FileSize to describe it; ni.NARSize, if set, sizes the compressor.
	// If reading r fails, even at its very end, PutNAR stores nothing and
	// returns the error. Caches that cannot be written return ErrReadOnly.
	PutNAR(ctx context.Context, ni *NARInfo, r io.Reader) error

	// PutNARInfo stores ni, replacing an earlier narinfo of the same path.
	// Write the NAR first, and the narinfos of ni's references before ni.
	PutNARInfo(ctx context.Context, ni *NARInfo) error

	// PutInfo stores the cache's nix-cache-info.
	PutInfo(ctx context.Context, info *Info) error
}

// narPath checks a narinfo's URL for a cache that serves files below
// its root: it must be a relative, clean path with no "..", so a hostile
// narinfo cannot point outside the cache.
func narPath(u string) (string, error) {
	if u == "" || strings.HasPrefix(u, "/") || strings.ContainsAny(u, "\\\x00?#") || path.Clean(u) != u {
		return "", fmt.Errorf("NAR URL '%s' is not a clean relative path in the cache", u)
	}
	for _, seg := range strings.Split(u, "/") {
		if seg == ".." || seg == "." {
			return "", fmt.Errorf("NAR URL '%s' leaves the cache", u)
		}
	}
	if parsed, err := url.Parse(u); err != nil || parsed.Scheme != "" {
		return "", fmt.Errorf("NAR URL '%s' is not a relative path", u)
	}
	return u, nil
}

// ctxReader fails with the context's cause once it is done, so that
// copying from a reader that does not watch the context (a file) stops.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if c.ctx.Err() != nil {
		return 0, context.Cause(c.ctx)
	}
	return c.r.Read(p)
}

// readCloser couples a reader with the closers of what it reads from,
// closed in order.
type readCloser struct {
	io.Reader
	closers []io.Closer
}

func (rc *readCloser) Close() error {
	var first error
	for _, c := range rc.closers {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
