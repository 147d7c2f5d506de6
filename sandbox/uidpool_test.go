package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func newTestPool(t *testing.T, slots int) *uidPool {
	t.Helper()
	p, err := newUIDPool(t.TempDir(), DefaultStartID, uint32(slots*idsPerSlot))
	if err != nil {
		t.Fatalf("newUIDPool() = %v, want nil", err)
	}
	return p
}

func TestUIDPool_Acquire_Distinct(t *testing.T) {
	p := newTestPool(t, 3)
	seen := map[int]bool{}
	var slots []*uidSlot
	for range 3 {
		s, err := p.acquire()
		if err != nil {
			t.Fatalf("acquire() = %v, want nil", err)
		}
		if seen[s.uid] || s.gid != s.uid || (s.uid-DefaultStartID)%idsPerSlot != 0 {
			t.Errorf("acquire() = uid %d gid %d: reused or not a slot's first id", s.uid, s.gid)
		}
		seen[s.uid] = true
		slots = append(slots, s)
	}
	for _, s := range slots {
		s.release()
	}
}

func TestUIDPool_Acquire_Exhausted(t *testing.T) {
	p := newTestPool(t, 2)
	a, _ := p.acquire()
	b, _ := p.acquire()
	if _, err := p.acquire(); !errors.Is(err, ErrUIDPoolExhausted) {
		t.Fatalf("acquire() with every slot held = %v, want ErrUIDPoolExhausted", err)
	}
	b.release()
	c, err := p.acquire()
	if err != nil {
		t.Fatalf("acquire() after a release = %v, want nil", err)
	}
	if c.uid != b.uid {
		t.Errorf("acquire() = uid %d, want the released %d", c.uid, b.uid)
	}
	a.release()
	c.release()
}

// TestUIDPool_Acquire_HeldElsewhere checks that a slot flock'ed through
// another open file, as another process would hold it, is skipped.
func TestUIDPool_Acquire_HeldElsewhere(t *testing.T) {
	p := newTestPool(t, 2)
	f, err := os.OpenFile(filepath.Join(p.dir, "slot-0"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	for range 3 { // whatever slot the search starts at
		s, err := p.acquire()
		if err != nil {
			t.Fatalf("acquire() = %v, want nil", err)
		}
		if s.uid != DefaultStartID+idsPerSlot {
			t.Errorf("acquire() = uid %d, want slot 1's %d", s.uid, DefaultStartID+idsPerSlot)
		}
		s.release()
	}
}
