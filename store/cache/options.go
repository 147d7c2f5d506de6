package cache

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/storefs/storefs/store"
)

// Defaults of Options, from Nix 2.8 where Nix has the setting.
const (
	// DefaultCompression is how a file:// cache compresses NARs unless
	// told otherwise; xz, as in Nix.
	DefaultCompression = CompressionXZ

	// defaultConnectTimeout is what Nix's connect-timeout = 0 means:
	// curl's own default of 300 s.
	defaultConnectTimeout = 300 * time.Second

	// defaultDownloadAttempts is download-attempts.
	defaultDownloadAttempts = 5

	// defaultRetryDelay is the first wait before retrying a transient
	// failure; it doubles with each attempt (Nix's baseRetryTimeMs).
	defaultRetryDelay = 250 * time.Millisecond

	// defaultStallTimeout is stalled-download-timeout: a download that
	// receives nothing for this long fails as transient.
	defaultStallTimeout = 300 * time.Second
)

// Options configure the caches that Open, NewFileCache and NewHTTPCache
// make. A nil *Options means all defaults. Each field names the store URL
// parameter or nix.conf setting it corresponds to and the caches it
// applies to.
type Options struct {
	// StoreDir is the store directory the cache must be for (both). Zero
	// means /nix/store.
	StoreDir store.Dir

	// Compression is how NARs are compressed when written
	// (compression=; file:// only): "xz", "zstd" or "none". Zero means
	// xz, as in Nix.
	Compression string
	// CompressionLevel is compression-level= for zstd (1 to 22, mapped
	// to the encoder's nearest level); xz has one level here. Zero means
	// the method's default.
	CompressionLevel int

	// Priority overrides the cache's Priority in Info (priority=). Zero
	// means keep what nix-cache-info says.
	Priority int
	// WantMassQuery overrides WantMassQuery in Info (want-mass-query=).
	// Nil means keep what nix-cache-info says.
	WantMassQuery *bool

	// ConnectTimeout is connect-timeout (HTTP). Zero means 300 s, curl's
	// default, as in Nix.
	ConnectTimeout time.Duration
	// DownloadAttempts is download-attempts (HTTP): how often a request
	// that fails transiently (network errors, 408, 429, 5xx) is tried,
	// with a doubling delay in between. A download cut short resumes
	// where it stopped. Zero means 5.
	DownloadAttempts int
	// RetryDelay is the first delay between attempts (HTTP). Zero means
	// 250 ms, as in Nix.
	RetryDelay time.Duration
	// StallTimeout is stalled-download-timeout (HTTP): a request that
	// receives nothing for this long fails transiently. Zero means 300 s.
	StallTimeout time.Duration

	// Proxy chooses the proxy of each HTTP request, like
	// http.ProxyFromEnvironment (which the CLI passes, as curl reads
	// http_proxy). Nil means no proxy.
	Proxy func(*http.Request) (*url.URL, error)

	// Logger receives warnings (an unknown URL parameter) and debug
	// messages (retries). Nil discards them.
	Logger *slog.Logger
}

// options are Options with defaults filled in.
type options Options

func (o *Options) withDefaults() (*options, error) {
	var r options
	if o != nil {
		r = options(*o)
	}
	if r.StoreDir == "" {
		r.StoreDir = store.DefaultDir
	}
	if _, err := store.ParseDir(string(r.StoreDir)); err != nil {
		return nil, err
	}
	if r.Compression == "" {
		r.Compression = DefaultCompression
	}
	if _, err := compressionExtension(r.Compression); err != nil {
		return nil, err
	}
	if !canCompress(r.Compression) {
		return nil, fmt.Errorf("compression '%s' is supported for reading only", r.Compression)
	}
	if r.ConnectTimeout <= 0 {
		r.ConnectTimeout = defaultConnectTimeout
	}
	if r.DownloadAttempts <= 0 {
		r.DownloadAttempts = defaultDownloadAttempts
	}
	if r.RetryDelay <= 0 {
		r.RetryDelay = defaultRetryDelay
	}
	if r.StallTimeout <= 0 {
		r.StallTimeout = defaultStallTimeout
	}
	if r.Logger == nil {
		r.Logger = discardLogger()
	}
	return &r, nil
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
