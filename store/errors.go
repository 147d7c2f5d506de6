package store

import "errors"

// Errors of parsing store paths.
var (
	// ErrInvalidPath is returned when a string is not a well-formed store
	// path in the store directory at hand.
	ErrInvalidPath = errors.New("invalid store path")
)

// Errors of querying and registering paths.
var (
	// ErrNotValid is returned when a path is asked for that is not valid in
	// the store.
	ErrNotValid = errors.New("path is not valid")

	// ErrHashMismatch is returned when contents do not have the hash they
	// were declared with.
	ErrHashMismatch = errors.New("hash mismatch")

	// ErrHasReferrers is returned when deleting a path that valid paths
	// still refer to.
	ErrHasReferrers = errors.New("path is still referenced")
)

// Errors of moving contents into place.
var (
	// errNoExchange is returned by exchange when the filesystem (or the
	// kernel) cannot swap two names atomically.
	errNoExchange = errors.New("atomic exchange not supported")
)
