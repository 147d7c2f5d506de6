//go:build linux

package sandbox

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/ulikunitz/xz"

	"github.com/storefs/storefs/store/nar"
)

// Constants of builtin:fetchurl, as in Nix 2.8's file transfers.
const (
	// defaultDownloadAttempts is download-attempts' default.
	defaultDownloadAttempts = 5

	// retryBase is the wait before the first retry (Nix's
	// baseRetryTimeMs); each further one waits about twice as long, with
	// up to 40% jitter so that failed clients do not return in step.
	retryBase = 250 * time.Millisecond

	// stallTimeout is the default of nix.conf's stalled-download-timeout:
	// a transfer that receives nothing for this long fails, transiently.
	stallTimeout = 300 * time.Second

	// maxRedirects is how many redirects a download follows, as curl's
	// CURLOPT_MAXREDIRS in Nix.
	maxRedirects = 10

	// maxErrorBody is the size below which the body of a failed HTTP
	// response is quoted in the error, as Nix does (servers often say
	// why there).
	maxErrorBody = 1024

	userAgent = "storefs (Nix/2.8 builtin:fetchurl)"
)

// errTooManyRedirects ends a redirect loop; it is not worth a retry.
var errTooManyRedirects = fmt.Errorf("stopped after %d redirects", maxRedirects)

// errStalled cancels a transfer that received nothing for stallTimeout.
var errStalled = fmt.Errorf("no data received for %d seconds", int(stallTimeout/time.Second))

// fetchurl is builtin:fetchurl (Nix 2.8's builtinFetchurl): it downloads
// the derivation's url to $out or, with unpack = "1", restores the NAR it
// downloads (xz-compressed if the URL ends in ".xz") as $out. The caller
// checks the result against the fixed output's hash, as for any
// fixed-output derivation, so neither the mirrors nor the server need to
// be trusted.
//
// The attributes: out; url (and urls, a space-separated list tried after
// it); unpack and executable ("1" or not); outputHashMode, outputHashAlgo
// and outputHash, for the hashed mirrors.
//
// It runs in the builtin stage, without a context: cancelling the build
// kills the stage. fc may be nil (defaults).
func fetchurl(env map[string]string, fc *fetchConfig, log io.Writer) error {
	if fc == nil {
		fc = &fetchConfig{Attempts: defaultDownloadAttempts}
	}
	out, err := attr(env, "out")
	if err != nil {
		return err
	}
	var urls []string
	if u, ok := env["url"]; ok {
		urls = append(urls, u)
	}
	urls = append(urls, strings.Fields(env["urls"])...)
	if len(urls) == 0 {
		return errors.New("attribute 'url' missing")
	}
	unpack := env["unpack"] == "1"
	executable := env["executable"] == "1"
	mode := env["outputHashMode"]
	if mode == "" {
		mode = "flat" // the default of Nix's derivation primop
	}
	// The executable bit is not part of a flat hash: Nix refuses a flat
	// output that is executable.
	if executable && mode != "recursive" {
		return fmt.Errorf("executable = \"1\" needs outputHashMode = \"recursive\", not \"%s\"", mode)
	}
	f, err := newFetcher(fc, log)
	if err != nil {
		return err
	}
	save := func(u string, xzNAR bool) error {
		return f.fetch(u, func(r io.Reader) error {
			return saveDownload(r, out, unpack, xzNAR, executable)
		})
	}

	if mode == "flat" && len(fc.HashedMirrors) > 0 {
		// As Nix, mirrors that fail are skipped silently, and so is a
		// hash that does not parse; the URL decides on the .xz.
		if p, err := hashedMirrorPath(env["outputHashAlgo"], env["outputHash"]); err == nil {
			for _, m := range fc.HashedMirrors {
				if !strings.HasSuffix(m, "/") {
					m += "/"
				}
				if save(m+p, unpack && strings.HasSuffix(urls[0], ".xz")) == nil {
					return nil
				}
			}
		}
	}
	for _, u := range urls {
		if err = save(u, unpack && strings.HasSuffix(u, ".xz")); err == nil {
			return nil
		}
	}
	return err
}

// saveDownload writes what r delivers to out: the file itself, or the
// NAR it holds (possibly xz-compressed) restored. On failure nothing is
// left at out.
func saveDownload(r io.Reader, out string, unpack, xzNAR, executable bool) error {
	var err error
	if unpack {
		if xzNAR {
			var xr *xz.Reader
			if xr, err = xz.NewReader(r); err != nil {
				return fmt.Errorf("decompressing: %w", err)
			}
			r = xr
		}
		err = nar.Restore(r, out)
	} else {
		err = writeDownload(r, out)
	}
	if err == nil && executable {
		if err = os.Chmod(out, 0o755); err != nil {
			err = fmt.Errorf("making '%s' executable: %w", out, err)
			os.RemoveAll(out)
		}
	}
	return err
}

// writeDownload copies r to the new file out, mode 0644.
func writeDownload(r io.Reader, out string) error {
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(out)
		return fmt.Errorf("writing '%s': %w", out, err)
	}
	return nil
}

// fetcher downloads URLs with retries.
type fetcher struct {
	client   *http.Client
	attempts int
	log      io.Writer
}

// newFetcher returns a fetcher configured by fc.
func newFetcher(fc *fetchConfig, log io.Writer) (*fetcher, error) {
	tlsConfig := &tls.Config{}
	if len(fc.CACerts) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(fc.CACerts) {
			return nil, errors.New("the CA bundle (ssl-cert-file) holds no certificates")
		}
		tlsConfig.RootCAs = pool
	}
	dialer := &net.Dialer{Timeout: fc.ConnectTimeout}
	transport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         dialer.DialContext,
		TLSClientConfig:     tlsConfig,
		TLSHandshakeTimeout: fc.ConnectTimeout,
		ForceAttemptHTTP2:   true,
		// The bytes as served: Nix does not ask for a content encoding,
		// and the hash is of what the server stores.
		DisableCompression: true,
	}
	var rt http.RoundTripper = transport
	if len(fc.Netrc) > 0 {
		rt = &netrcTransport{base: transport, machines: parseNetrc(fc.Netrc)}
	}
	client := &http.Client{
		Transport: rt,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return errTooManyRedirects
			}
			return nil
		},
	}
	return &fetcher{client: client, attempts: max(fc.Attempts, 1), log: log}, nil
}

// fetch downloads u and gives its contents to save, up to f.attempts
// times while the failure is transient. save must leave nothing behind
// when it fails.
func (f *fetcher) fetch(u string, save func(io.Reader) error) error {
	for attempt := 1; ; attempt++ {
		err := f.fetchOnce(u, save)
		var te *transferError
		if err == nil || !errors.As(err, &te) || !te.transient || attempt >= f.attempts {
			return err
		}
		wait := time.Duration(float64(retryBase) * math.Pow(2, float64(attempt-1)+rand.Float64()/2))
		fmt.Fprintf(f.log, "warning: %v; retrying in %d ms\n", err, wait.Milliseconds())
		time.Sleep(wait)
	}
}

// fetchOnce downloads u once. A failure to get the data is a
// *transferError; a failure to save it is returned as it is.
func (f *fetcher) fetchOnce(rawURL string, save func(io.Reader) error) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return &transferError{url: rawURL, msg: err.Error()}
	}
	// A stalled transfer is cancelled; every read of data rearms the
	// timer.
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	stall := time.AfterFunc(stallTimeout, func() { cancel(errStalled) })
	defer stall.Stop()

	var body io.ReadCloser
	switch u.Scheme {
	case "file":
		body, err = openFileURL(rawURL, u)
	case "http", "https":
		body, err = f.get(ctx, rawURL)
	default:
		err = &transferError{url: rawURL, msg: fmt.Sprintf("unsupported protocol '%s'", u.Scheme)}
	}
	if err != nil {
		return err
	}
	defer body.Close()
	src := &transferReader{r: body, stall: stall}
	err = save(src)
	if src.err != nil {
		// The transfer broke off: that, not what save made of it, is
		// the failure.
		msg := src.err.Error()
		if cause := context.Cause(ctx); cause != nil {
			msg = cause.Error()
		}
		return &transferError{url: rawURL, msg: msg, transient: true}
	}
	return err
}

// get starts an HTTP GET of rawURL; a status other than Nix's successful
// ones is a *transferError.
func (f *fetcher) get(ctx context.Context, rawURL string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, &transferError{url: rawURL, msg: err.Error()}
	}
	req.Header.Set("User-Agent", userAgent)
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, networkError(ctx, rawURL, err)
	}
	switch resp.StatusCode {
	case http.StatusOK, http.StatusCreated, http.StatusNoContent, http.StatusPartialContent, http.StatusNotModified:
		return resp.Body, nil
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	resp.Body.Close()
	e := &transferError{url: rawURL, msg: fmt.Sprintf("HTTP error %d", resp.StatusCode), transient: transientStatus(resp.StatusCode)}
	if len(data) < maxErrorBody {
		e.body = strings.TrimRight(string(data), " \t\r\n")
	}
	return nil, e
}

// transientStatus reports whether an HTTP status is worth a retry, as in
// Nix 2.8: not for a missing file, nor for refused credentials, nor for
// most client errors, nor for a few server errors that will not go away.
func transientStatus(code int) bool {
	switch {
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests:
		return true
	case code >= 400 && code < 500:
		return false
	case code == http.StatusNotImplemented || code == http.StatusHTTPVersionNotSupported || code == http.StatusNetworkAuthenticationRequired:
		return false
	}
	return true
}

// networkError describes a request that got no response. Network trouble
// is transient; a certificate that does not verify, a redirect loop or a
// bad URL is not.
func networkError(ctx context.Context, rawURL string, err error) error {
	var certErr *tls.CertificateVerificationError
	transient := !errors.As(err, &certErr) && !errors.Is(err, errTooManyRedirects)
	if cause := context.Cause(ctx); cause != nil {
		err = cause
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // it repeats the URL, which the message names anyway
	}
	return &transferError{url: rawURL, msg: err.Error(), transient: transient}
}

// openFileURL opens the file a file:// URL names, as the builder sees it
// (inside the sandbox). Its failures are not transient.
func openFileURL(rawURL string, u *url.URL) (io.ReadCloser, error) {
	if u.Host != "" && u.Host != "localhost" {
		return nil, &transferError{url: rawURL, msg: fmt.Sprintf("file URL with host '%s'", u.Host)}
	}
	f, err := os.Open(u.Path)
	if err != nil {
		return nil, &transferError{url: rawURL, msg: err.Error()}
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, &transferError{url: rawURL, msg: fmt.Sprintf("'%s' is not a regular file", u.Path)}
	}
	return f, nil
}

// transferError is a download that failed: Nix's FileTransferError.
type transferError struct {
	url       string
	msg       string // "HTTP error 404", the network error, …
	body      string // a short response body, quoted
	transient bool   // worth another attempt
}

func (e *transferError) Error() string {
	s := fmt.Sprintf("unable to download '%s': %s", e.url, e.msg)
	if e.body != "" {
		s += "\n\nresponse body:\n\n" + e.body
	}
	return s
}

// transferReader reads a download, remembering a failure of the transfer
// (as opposed to one of whoever reads it) and keeping the stall timer
// from firing while data comes.
type transferReader struct {
	r     io.Reader
	stall *time.Timer
	err   error
}

func (t *transferReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.stall.Reset(stallTimeout)
	}
	if err != nil && err != io.EOF && t.err == nil {
		t.err = err
	}
	return n, err
}
