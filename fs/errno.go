package fs

import (
	"context"
	"errors"
	"syscall"
)

// errno is the one place that turns errors into the kernel's answers: an
// unknown or impossible name is ENOENT, an interrupted wait EINTR, a
// failed build (or anything else) EIO.
func errno(err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrNotStorePath), errors.Is(err, ErrUnknown):
		return syscall.ENOENT
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return syscall.EINTR
	default:
		return syscall.EIO
	}
}
