package nar

import (
	"fmt"
	"strconv"
)

// FormatError is returned when the input is not a valid NAR: it breaks the
// grammar, a limit, or the rules for names. Truncated input gives a
// FormatError whose Err is io.ErrUnexpectedEOF. Errors of the underlying
// reader are returned wrapped, not as a FormatError, so callers can tell a
// bad archive from a failed download with errors.As.
type FormatError struct {
	// Offset is the byte offset in the archive of the offending token.
	Offset int64

	// Path is the path of the node being read when the error was found,
	// "" for the root.
	Path string

	// Msg says what was expected and what was found.
	Msg string

	// Err is the underlying cause, if any: io.ErrUnexpectedEOF for
	// truncated input.
	Err error
}

// maxErrorPathLen is how much of a path a FormatError's message shows.
const maxErrorPathLen = 200

// Error says where the archive is malformed and how.
func (e *FormatError) Error() string {
	s := "invalid nar at byte " + strconv.FormatInt(e.Offset, 10)
	if p := e.Path; p != "" {
		// Paths nest up to MaxDepth names of up to MaxNameLen bytes: keep
		// the end, which says where in the tree.
		if len(p) > maxErrorPathLen {
			p = "…" + p[len(p)-maxErrorPathLen:]
		}
		s += fmt.Sprintf(" (path %q)", p)
	}
	s += ": " + e.Msg
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns Err.
func (e *FormatError) Unwrap() error { return e.Err }
