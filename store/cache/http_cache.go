package cache

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxIdleConnsPerHost lets parallel substitutions (max-substitution-jobs,
// 16 by default) reuse their connections.
const maxIdleConnsPerHost = 16

// httpCache is a binary cache served over HTTP or HTTPS, read-only, as
// Nix's HttpBinaryCacheStore reads one.
type httpCache struct {
	base   string // the cache URL without a trailing slash or query
	client *http.Client
	o      *options
	info   *infoMemo
}

// NewHTTPCache returns the binary cache at rawURL (http:// or https://).
// Requests that fail transiently (network errors, HTTP 408, 429 and 5xx,
// a stalled or cut-off body) are tried Options.DownloadAttempts times in
// all with a doubling delay; a NAR download that breaks off resumes with
// a Range request where it stopped. 404, 403 and 410 mean ErrNotFound;
// other failures are ErrUnavailable. Bodies stream, and cancelling the
// context aborts a request. Writing returns ErrReadOnly.
func NewHTTPCache(rawURL string, opts *Options) (Cache, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("binary cache URL '%s': %w", rawURL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("binary cache URL '%s' is not http:// or https://", rawURL)
	}
	u.RawQuery, u.Fragment = "", ""
	transport := &http.Transport{
		Proxy: o.Proxy,
		DialContext: (&net.Dialer{
			Timeout:   o.ConnectTimeout,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSHandshakeTimeout:   o.ConnectTimeout,
		ResponseHeaderTimeout: o.StallTimeout,
		MaxIdleConnsPerHost:   maxIdleConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &httpCache{
		base:   strings.TrimSuffix(u.String(), "/"),
		client: &http.Client{Transport: transport},
		o:      o,
		info:   newInfoMemo(),
	}, nil
}

func (c *httpCache) URL() string { return c.base }

func (c *httpCache) Info(ctx context.Context) (*Info, error) {
	return c.info.get(ctx, c.infoReader(ctx), c.URL(), c.o)
}

// infoReader reads the cache's nix-cache-info with ctx.
func (c *httpCache) infoReader(ctx context.Context) func() ([]byte, error) {
	return func() ([]byte, error) { return c.fetch(ctx, c.base+"/"+infoFile, maxInfoSize) }
}

func (c *httpCache) NARInfo(ctx context.Context, hashPart string) (*NARInfo, error) {
	if err := checkHashPart(hashPart); err != nil {
		return nil, err
	}
	if err := c.info.usable(ctx, c.infoReader(ctx), c.URL(), c.o); err != nil {
		return nil, err
	}
	u := c.base + "/" + narInfoFile(hashPart)
	data, err := c.fetch(ctx, u, maxNARInfoSize)
	if err != nil {
		return nil, err
	}
	return parseNARInfoFor(c.o.StoreDir, data, hashPart, "'"+u+"'")
}

// fetch downloads a small file whole.
func (c *httpCache) fetch(ctx context.Context, u string, limit int64) ([]byte, error) {
	d, err := c.open(ctx, u)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	data, err := io.ReadAll(io.LimitReader(d, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("'%s' is larger than %d bytes", u, limit)
	}
	return data, nil
}

func (c *httpCache) NAR(ctx context.Context, ni *NARInfo) (io.ReadCloser, error) {
	if err := c.info.usable(ctx, c.infoReader(ctx), c.URL(), c.o); err != nil {
		return nil, err
	}
	u, err := c.narURL(ni.URL)
	if err != nil {
		return nil, fmt.Errorf("binary cache '%s', path '%s': %w", c.URL(), ni.StorePath, err)
	}
	d, err := c.open(ctx, u)
	if err != nil {
		return nil, err
	}
	dec, err := NewDecompressor(ni.Compression, d)
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("binary cache '%s', path '%s': %w", c.URL(), ni.StorePath, err)
	}
	return &narStream{dec: dec, d: d}, nil
}

// narURL resolves a narinfo's URL: relative to the cache, as Nix writes
// them, or an absolute http(s) URL, which Nix also follows.
func (c *httpCache) narURL(u string) (string, error) {
	if strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://") {
		if _, err := url.Parse(u); err != nil {
			return "", fmt.Errorf("NAR URL '%s': %w", u, err)
		}
		return u, nil
	}
	rel, err := narPath(u)
	if err != nil {
		return "", err
	}
	return c.base + "/" + rel, nil
}

func (c *httpCache) PutNAR(ctx context.Context, ni *NARInfo, r io.Reader) error {
	return fmt.Errorf("writing to '%s': %w", c.URL(), ErrReadOnly)
}

func (c *httpCache) PutNARInfo(ctx context.Context, ni *NARInfo) error {
	return fmt.Errorf("writing to '%s': %w", c.URL(), ErrReadOnly)
}

func (c *httpCache) PutInfo(ctx context.Context, info *Info) error {
	return fmt.Errorf("writing to '%s': %w", c.URL(), ErrReadOnly)
}

// narStream is a decompressed NAR download. When the decompressor fails
// because the download did, it returns the download's error, which says
// what happened on the network (and is ErrUnavailable).
type narStream struct {
	dec io.ReadCloser
	d   *download
}

func (s *narStream) Read(p []byte) (int, error) {
	n, err := s.dec.Read(p)
	if err != nil && err != io.EOF && s.d.err != nil && s.d.err != io.EOF {
		err = s.d.err
	}
	return n, err
}

func (s *narStream) Close() error {
	s.dec.Close()
	return s.d.Close()
}
