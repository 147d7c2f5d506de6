package store

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// exchange swaps the entries at a and b in one step (renameat2 with
// RENAME_EXCHANGE, Linux 3.15): there is no moment when either name is
// missing. Both must exist and be on one filesystem. A filesystem that
// does not implement the flag answers EINVAL (and a kernel without the
// call ENOSYS); both are reported as errNoExchange so the caller can fall
// back.
func exchange(a, b string) error {
	err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS):
		return errNoExchange
	default:
		return fmt.Errorf("renameat2 %s %s RENAME_EXCHANGE: %w", a, b, err)
	}
}
