package sandbox

import (
	"errors"
	"syscall"
)

// Errors of New and Run.
var (
	// ErrNoNamespaces is returned (wrapped) by New and Run when the kernel
	// does not let us create the sandbox's namespaces: user namespaces
	// disabled (/proc/sys/user/max_user_namespaces is 0) or not built in,
	// or clone refused them. Setting Options.Disabled (nix.conf's
	// `sandbox = false`) builds without them.
	ErrNoNamespaces = errors.New("namespaces for the build sandbox are unavailable")

	// ErrUIDPoolExhausted is returned (wrapped) by Run when every slot of
	// the uid pool is held by another build, in this process or another.
	// The caller may wait for a build to finish and try again, as Nix
	// does.
	ErrUIDPoolExhausted = errors.New("all build uids are in use")
)

// SetupError is returned by Run when setting up the build environment
// failed, so the builder never ran; a builder that ran and failed is not an
// error (see Result). Callers tell the two apart with errors.As.
type SetupError struct {
	// Step names what failed, for example "mounts", "pivot_root",
	// "exec builder" or "sandbox-paths".
	Step string
	// Err is the cause. It unwraps to the syscall.Errno where there is
	// one, so errors.Is(err, fs.ErrNotExist) works for a missing builder.
	Err error
}

func (e *SetupError) Error() string {
	return "while setting up the build environment: " + e.Step + ": " + e.Err.Error()
}

func (e *SetupError) Unwrap() error { return e.Err }

// childError is an error the sandbox child reported: its text, and the
// errno below it so that errors.Is keeps working across the process
// boundary.
type childError struct {
	msg   string
	errno syscall.Errno
}

func (e *childError) Error() string { return e.msg }

func (e *childError) Unwrap() error {
	if e.errno == 0 {
		return nil
	}
	return e.errno
}
