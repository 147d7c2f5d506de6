package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
)

// uidPool hands out the host uids that builders run as, one slot per
// running build, like Nix's auto-allocate-uids. Slot k is uid = gid =
// start + k*65536. A slot is held by an exclusive flock on the file
// "slot-<k>" in dir, so slots are exclusive across processes too (each
// acquire opens the file anew, and flocks of different open files conflict
// even within one process). The kernel drops the lock if the holder dies,
// so a crash never leaks a slot.
//
// Reusing a slot is safe without killing its uid's processes first (what
// Nix does for build users): every process of a sandboxed build lives in
// the build's pid namespace, which dies with the builder.
type uidPool struct {
	dir   string
	start uint32
	slots int
	next  atomic.Uint32 // slot where the next search starts, to spread uids
}

// uidSlot is one held slot.
type uidSlot struct {
	fd  int // the flock'ed lock file
	uid int
	gid int
}

func newUIDPool(dir string, start, count uint32) (*uidPool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating uid lock directory: %w", err)
	}
	return &uidPool{dir: dir, start: start, slots: int(count / idsPerSlot)}, nil
}

// acquire takes a free slot, or fails with ErrUIDPoolExhausted.
func (p *uidPool) acquire() (*uidSlot, error) {
	first := int(p.next.Add(1)-1) % p.slots
	for i := 0; i < p.slots; i++ {
		k := (first + i) % p.slots
		name := filepath.Join(p.dir, "slot-"+strconv.Itoa(k))
		fd, err := syscall.Open(name, syscall.O_RDWR|syscall.O_CREAT|syscall.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, fmt.Errorf("opening uid lock %s: %w", name, err)
		}
		err = syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			id := int(p.start) + k*idsPerSlot
			return &uidSlot{fd: fd, uid: id, gid: id}, nil
		}
		syscall.Close(fd)
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("locking uid lock %s: %w", name, err)
		}
	}
	return nil, fmt.Errorf("%w (%d slots of uid lock directory %s)", ErrUIDPoolExhausted, p.slots, p.dir)
}

// release gives the slot back. Call it only once nothing runs as the
// slot's uid any more.
func (s *uidSlot) release() {
	syscall.Close(s.fd) // closing the only descriptor drops the flock
}
