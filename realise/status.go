package realise

import (
	"fmt"
	"strings"

	"github.com/storefs/storefs/store"
)

// Status is how a goal ended, with Nix's BuildResult names.
type Status int

// The statuses. The first three are successes.
const (
	Built Status = iota + 1
	Substituted
	AlreadyValid
	PermanentFailure
	InputRejected
	OutputRejected
	TransientFailure
	TimedOut
	MiscFailure
	DependencyFailed
	LogLimitExceeded
	NotDeterministic
	// NoSubstituters is a substitution goal's "no cache has it": not an
	// error for a derivation goal, which then builds.
	NoSubstituters
	// Cancelled means nobody waited for the goal any more.
	Cancelled
)

var statusNames = map[Status]string{
	Built:            "Built",
	Substituted:      "Substituted",
	AlreadyValid:     "AlreadyValid",
	PermanentFailure: "PermanentFailure",
	InputRejected:    "InputRejected",
	OutputRejected:   "OutputRejected",
	TransientFailure: "TransientFailure",
	TimedOut:         "TimedOut",
	MiscFailure:      "MiscFailure",
	DependencyFailed: "DependencyFailed",
	LogLimitExceeded: "LogLimitExceeded",
	NotDeterministic: "NotDeterministic",
	NoSubstituters:   "NoSubstituters",
	Cancelled:        "Cancelled",
}

func (s Status) String() string {
	if n, ok := statusNames[s]; ok {
		return n
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Success reports whether the goal's paths are valid.
func (s Status) Success() bool { return s == Built || s == Substituted || s == AlreadyValid }

// ExitBits are the bits of Nix's exit status (Worker::exitStatus) that
// failures set; the process exit status is 0x60|bits when any is set.
type ExitBits uint8

// The exit bits.
const (
	BitTimedOut         ExitBits = 1
	BitHashMismatch     ExitBits = 2
	BitBuildFailure     ExitBits = 4
	BitNotDeterministic ExitBits = 8
)

// BuildError is the error of a failed goal: which derivation or path, its
// status, and the message Nix would print (multi-line messages continue on
// lines that the CLI indents).
type BuildError struct {
	// Drv is the derivation of a derivation goal, else "".
	Drv store.Path
	// Path is the path of a substitution goal, else "".
	Path   store.Path
	Status Status
	// Msg is the message without the log tail.
	Msg string
	// LogTail holds the last log-lines lines of a failed builder's log.
	LogTail []string
	// Bits are the exit-status bits of this failure and of the failures
	// it was caused by.
	Bits ExitBits
	// HashMismatch is set for a fixed-output hash mismatch.
	HashMismatch bool
}

// Error is the message with the log tail, as Nix prints it when the log
// was not shown live.
func (e *BuildError) Error() string { return e.Message(true) }

// Message renders the error, with the log tail or without (when the log
// was shown live, as with -L).
func (e *BuildError) Message(withTail bool) string {
	if !withTail || len(e.LogTail) == 0 {
		return e.Msg
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s;\nlast %d log lines:\n", e.Msg, len(e.LogTail))
	for _, l := range e.LogTail {
		b.WriteString("> " + l + "\n")
	}
	if e.Drv != "" {
		fmt.Fprintf(&b, "For full logs, run 'storefs log %s'.", e.Drv)
	}
	return b.String()
}

// bitsFor is what a failure of this status contributes to the exit status.
func bitsFor(s Status, hashMismatch bool) ExitBits {
	var b ExitBits
	switch s {
	case PermanentFailure:
		b |= BitBuildFailure
	case TimedOut:
		b |= BitBuildFailure | BitTimedOut
	case NotDeterministic:
		b |= BitNotDeterministic
	}
	if hashMismatch {
		b |= BitBuildFailure | BitHashMismatch
	}
	return b
}

func newBuildError(drv store.Path, s Status, format string, args ...any) *BuildError {
	return &BuildError{Drv: drv, Status: s, Msg: fmt.Sprintf(format, args...), Bits: bitsFor(s, false)}
}
