package cache

import (
	"errors"
	"fmt"

	"github.com/storefs/storefs/store"
)

// Errors of looking up and reading a cache.
var (
	// ErrNotFound is returned when a cache does not have a path's narinfo
	// (or another file asked for): HTTP 404, 403 or 410, or no such file.
	ErrNotFound = errors.New("not in the binary cache")

	// ErrUnavailable is returned when a cache cannot be reached, or
	// answers with a server error, after all attempts; and by the circuit
	// breaker while it fails fast for a cache that was found down.
	ErrUnavailable = errors.New("binary cache is unavailable")

	// ErrUntrusted is returned when a narinfo carries no valid signature
	// of a trusted key and is not content-addressed.
	ErrUntrusted = errors.New("substitute is not signed by a trusted key")
)

// Errors of writing a cache.
var (
	// ErrReadOnly is returned when writing to a cache that cannot be
	// written to, such as an HTTP cache.
	ErrReadOnly = errors.New("binary cache is read-only")
)

// Causes of download failures, internal to the HTTP cache.
var (
	// errStalled is the cause of a request cancelled because nothing
	// arrived for the stall timeout.
	errStalled = errors.New("download stalled")

	// errClosed is returned by a download read after Close.
	errClosed = errors.New("download closed")
)

// transientError marks a download failure worth trying again.
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// unavailableError is a failure to reach a cache: its message is the
// cause's, and errors.Is finds both the cause and ErrUnavailable.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string   { return e.err.Error() }
func (e *unavailableError) Unwrap() []error { return []error{e.err, ErrUnavailable} }

// untrustedError is the refusal of an unsigned substitute, in Nix 2.8's
// words; errors.Is finds ErrUntrusted.
type untrustedError struct {
	path string
	url  string
}

func (e *untrustedError) Error() string {
	return "the substitute for '" + e.path + "' from '" + e.url + "' is not signed by any of the keys in 'trusted-public-keys'"
}

func (e *untrustedError) Unwrap() error { return ErrUntrusted }

// mismatchError is contents that do not match what their narinfo says,
// in Nix's words; errors.Is finds store.ErrHashMismatch.
type mismatchError struct{ msg string }

func (e *mismatchError) Error() string { return e.msg }
func (e *mismatchError) Unwrap() error { return store.ErrHashMismatch }

// mismatch makes a mismatchError in the form of Nix's "hash mismatch
// importing path" errors.
func mismatch(what string, p store.Path, specified, got any) error {
	return &mismatchError{fmt.Sprintf("%s mismatch importing path '%s';\n  specified: %v\n  got:       %v", what, p, specified, got)}
}
