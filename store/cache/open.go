package cache

import (
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
)

// ignoredParams are store URL parameters of Nix's binary cache stores
// that storefs accepts without acting on them.
var ignoredParams = map[string]bool{
	"parallel-compression": true, "write-nar-listing": true, "write-debug-info": true,
	"index-debug-info": true, "local-nar-cache": true, "ls-compression": true,
	"log-compression": true, "narinfo-compression": true, "path-info-cache-size": true,
	"system-features": true, "trusted": true, "buffer-size": true,
}

// Open returns the binary cache at a Nix store URL, file:///dir or
// http(s)://host/path, configured by opts and by the URL's query
// parameters, which win: compression= (xz, zstd, none), compression-level=,
// priority=, want-mass-query= and secret-key=FILE, which reads a secret
// key (as `nix-store --generate-binary-cache-key` writes it) and signs
// every narinfo written (NewSigningCache). Nix's other binary cache
// parameters are accepted and ignored with a warning, as are unknown
// ones. Signature checking and the circuit breaker are up to the caller.
func Open(rawURL string, opts *Options) (Cache, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("store URL '%s': %w", rawURL, err)
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	logger := o.Logger
	if logger == nil {
		logger = discardLogger()
	}
	query := u.Query()
	keys := make([]string, 0, len(query))
	for k := range query {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var secretKeyFile string
	for _, k := range keys {
		v := query[k][len(query[k])-1]
		bad := func() error { return fmt.Errorf("store URL '%s': invalid value '%s' for '%s'", rawURL, v, k) }
		switch k {
		case "compression":
			o.Compression = v
		case "compression-level":
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, bad()
			}
			// Nix's -1 means the method's default, our 0.
			o.CompressionLevel = max(n, 0)
		case "priority":
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, bad()
			}
			o.Priority = n
		case "want-mass-query":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, bad()
			}
			o.WantMassQuery = &b
		case "secret-key":
			secretKeyFile = v
		default:
			if ignoredParams[k] {
				logger.Warn("ignoring store URL parameter", "url", u.Redacted(), "param", k)
			} else {
				logger.Warn("unknown store URL parameter", "url", u.Redacted(), "param", k)
			}
		}
	}
	u.RawQuery, u.Fragment = "", ""
	var c Cache
	switch u.Scheme {
	case "file":
		if (u.Host != "" && u.Host != "localhost") || u.Path == "" {
			return nil, fmt.Errorf("store URL '%s' must be file:///<absolute directory>", rawURL)
		}
		c, err = NewFileCache(u.Path, &o)
	case "http", "https":
		c, err = NewHTTPCache(u.String(), &o)
	default:
		return nil, fmt.Errorf("don't know how to open binary cache '%s'", rawURL)
	}
	if err != nil {
		return nil, err
	}
	if secretKeyFile != "" {
		data, err := os.ReadFile(secretKeyFile)
		if err != nil {
			return nil, fmt.Errorf("reading secret key of '%s': %w", u.String(), err)
		}
		sk, err := ParseSecretKey(string(data))
		if err != nil {
			return nil, fmt.Errorf("secret key %s: %w", secretKeyFile, err)
		}
		c = NewSigningCache(c, sk)
	}
	return c, nil
}
