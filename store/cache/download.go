package cache

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// download is one file being downloaded: a response body that, after a
// transient failure, resumes with a Range request where it stopped, and
// that fails transiently when nothing arrives for the stall timeout.
type download struct {
	c   *httpCache
	ctx context.Context
	url string

	resp    *http.Response
	cancel  context.CancelCauseFunc
	timer   *time.Timer
	off     int64 // bytes returned so far
	attempt int   // requests made so far
	pending error // a failure that came with data, handled on the next Read
	err     error // sticky: io.EOF, or the error that ended the download
}

// open starts downloading u.
func (c *httpCache) open(ctx context.Context, u string) (*download, error) {
	d := &download{c: c, ctx: ctx, url: u}
	if err := d.connect(nil); err != nil {
		return nil, err
	}
	return d, nil
}

// connect makes requests until one answers, one fails for good, or the
// attempts are used up. last is the transient failure that made the
// download reconnect, if any.
func (d *download) connect(last error) error {
	for d.attempt < d.c.o.DownloadAttempts {
		if last != nil {
			if err := d.backoff(last); err != nil {
				return err
			}
		}
		d.attempt++
		err := d.request()
		if err == nil {
			return nil
		}
		var te *transientError
		if !errors.As(err, &te) {
			return err
		}
		last = te.err
	}
	attempts := "1 attempt"
	if d.attempt != 1 {
		attempts = strconv.Itoa(d.attempt) + " attempts"
	}
	return &unavailableError{fmt.Errorf("%w (%s)", last, attempts)}
}

// backoff waits before the next attempt: RetryDelay doubled for each
// attempt made, plus up to half again at random so that clients do not
// retry in step, as Nix does.
func (d *download) backoff(cause error) error {
	delay := d.c.o.RetryDelay << (d.attempt - 1)
	delay += time.Duration(rand.Int64N(int64(delay)/2 + 1))
	d.c.o.Logger.Debug("retrying download", "url", d.url, "attempt", d.attempt+1, "delay", delay, "err", cause)
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-d.ctx.Done():
		return fmt.Errorf("downloading '%s': %w", d.url, context.Cause(d.ctx))
	case <-t.C:
		return nil
	}
}

// request makes one request for the rest of the file.
func (d *download) request() error {
	ctx, cancel := context.WithCancelCause(d.ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url, nil)
	if err != nil {
		cancel(nil)
		return &unavailableError{fmt.Errorf("downloading '%s': %w", d.url, err)}
	}
	req.Header.Set("User-Agent", "storefs")
	if d.off > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(d.off, 10)+"-")
	}
	timer := time.AfterFunc(d.c.o.StallTimeout, func() { cancel(errStalled) })
	resp, err := d.c.client.Do(req)
	if err != nil {
		timer.Stop()
		cancel(nil)
		return d.failure(ctx, err)
	}
	d.resp, d.cancel, d.timer = resp, cancel, timer
	if err := d.checkStatus(); err != nil {
		d.closeResponse()
		return err
	}
	return nil
}

// checkStatus sorts the response's status into success, not found,
// transient and permanent failure.
func (d *download) checkStatus() error {
	resp := d.resp
	status := fmt.Errorf("downloading '%s': HTTP status %s", d.url, resp.Status)
	switch code := resp.StatusCode; {
	case code == http.StatusOK:
		if d.off > 0 {
			// The server ignored the Range header: skip what we have.
			if _, err := io.CopyN(io.Discard, resp.Body, d.off); err != nil {
				return d.failure(d.reqContext(), err)
			}
		}
		return nil
	case code == http.StatusPartialContent && d.off > 0:
		if start, ok := contentRangeStart(resp.Header.Get("Content-Range")); !ok || start != d.off {
			return &unavailableError{fmt.Errorf("downloading '%s': resumed at byte %d, asked for %d", d.url, start, d.off)}
		}
		return nil
	case code == http.StatusNotFound || code == http.StatusForbidden || code == http.StatusGone:
		return fmt.Errorf("%w: %w", status, ErrNotFound)
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		return &transientError{status}
	}
	return &unavailableError{status}
}

// reqContext is the context of the current request.
func (d *download) reqContext() context.Context { return d.resp.Request.Context() }

// failure classifies an error of a request or of reading its body.
func (d *download) failure(reqCtx context.Context, err error) error {
	if d.ctx.Err() != nil {
		return fmt.Errorf("downloading '%s': %w", d.url, context.Cause(d.ctx))
	}
	if context.Cause(reqCtx) == errStalled {
		err = fmt.Errorf("no data for %s", d.c.o.StallTimeout)
	}
	// url.Error repeats the method and URL, which the message has.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	err = fmt.Errorf("downloading '%s': %w", d.url, err)
	var certErr *tls.CertificateVerificationError
	if errors.As(err, &certErr) {
		return &unavailableError{err}
	}
	return &transientError{err}
}

// contentRangeStart parses the first byte of "bytes <start>-<end>/<size>".
func contentRangeStart(s string) (int64, bool) {
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, false
	}
	start, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(start, 10, 64)
	return n, err == nil
}

func (d *download) Read(p []byte) (int, error) {
	for {
		if d.err != nil {
			return 0, d.err
		}
		if d.pending == nil {
			n, err := d.resp.Body.Read(p)
			if n > 0 {
				d.off += int64(n)
				d.timer.Reset(d.c.o.StallTimeout)
			}
			switch {
			case err == nil:
				return n, nil
			case err == io.EOF:
				d.closeResponse()
				d.err = io.EOF
				return n, io.EOF
			case n > 0:
				d.pending = err
				return n, nil
			}
			d.pending = err
		}
		// The body broke off: resume where it stopped, or give up.
		err := d.failure(d.reqContext(), d.pending)
		d.pending = nil
		d.closeResponse()
		var te *transientError
		if !errors.As(err, &te) {
			d.err = err
			continue
		}
		if err := d.connect(te.err); err != nil {
			d.err = err
		}
	}
}

// closeResponse releases the current response.
func (d *download) closeResponse() {
	if d.resp == nil {
		return
	}
	d.timer.Stop()
	d.resp.Body.Close()
	d.cancel(nil)
	d.resp = nil
}

func (d *download) Close() error {
	d.closeResponse()
	if d.err == nil {
		d.err = errClosed
	}
	return nil
}
