package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// fileLock is an exclusive flock on a file. The kernel drops it when the
// process dies, so a crashed holder never leaves the store locked.
type fileLock struct {
	f *os.File
}

// lockPollInterval is how often a blocked lock is retried. flock has no
// timeout or cancellation, so waiting polls with LOCK_NB; 20 ms keeps the
// wait short without spinning.
const lockPollInterval = 20 * time.Millisecond

// tryLockFile opens (creating) name and tries to lock it exclusively. It
// returns (nil, nil) when another process holds the lock.
func tryLockFile(name string) (*fileLock, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock file %s: %w", name, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("flock %s: %w", name, err)
	}
	// The previous holder may have removed the file between our open and
	// our lock; a lock on an unlinked file protects nothing, so retry.
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("fstat %s: %w", name, err)
	}
	if st.Nlink == 0 {
		f.Close()
		return nil, nil
	}
	return &fileLock{f: f}, nil
}

// lockFile locks name exclusively, waiting until ctx is done. onWait is
// called once if the lock is busy.
func lockFile(ctx context.Context, name string, onWait func()) (*fileLock, error) {
	for waited := false; ; waited = true {
		l, err := tryLockFile(name)
		if err != nil || l != nil {
			return l, err
		}
		if !waited && onWait != nil {
			onWait()
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for lock %s: %w", name, context.Cause(ctx))
		case <-time.After(lockPollInterval):
		}
	}
}

// writePID records the holder's pid in the lock file for waiters to name.
func (l *fileLock) writePID() error {
	if err := l.f.Truncate(0); err != nil {
		return err
	}
	_, err := l.f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return err
}

// readLockPID reads the pid recorded in a lock file, or 0.
func readLockPID(name string) int {
	b, err := os.ReadFile(name)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func (l *fileLock) unlock() error {
	// Closing the last descriptor releases the flock.
	return l.f.Close()
}

// PathLocks serialises work on store paths, within this process (a mutex
// per path) and across processes (flock on "<path>.lock" in the backing
// directory), like Nix's output locks.
type PathLocks struct {
	mu    sync.Mutex
	held  map[string]chan struct{}
	store *Store
}

// PathLock is a held lock on a set of paths.
type PathLock struct {
	locks *PathLocks
	bases []string
	files []*fileLock
}

// Lock takes the locks of all ps, in sorted order to avoid deadlocks
// between goals locking overlapping sets.
func (pl *PathLocks) Lock(ctx context.Context, ps []Path) (*PathLock, error) {
	sorted := NewPathSet(ps...).Sorted()
	l := &PathLock{locks: pl}
	for _, p := range sorted {
		if err := pl.lockOne(ctx, p.Base()); err != nil {
			l.Unlock()
			return nil, err
		}
		l.bases = append(l.bases, p.Base())
		f, err := lockFile(ctx, pl.store.lockFileName(p.Base()), nil)
		if err != nil {
			l.Unlock()
			return nil, err
		}
		l.files = append(l.files, f)
	}
	return l, nil
}

func (pl *PathLocks) lockOne(ctx context.Context, base string) error {
	for {
		pl.mu.Lock()
		ch, busy := pl.held[base]
		if !busy {
			pl.held[base] = make(chan struct{})
			pl.mu.Unlock()
			return nil
		}
		pl.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for lock on %s: %w", base, context.Cause(ctx))
		}
	}
}

// Unlock releases the locks and removes the lock files, as Nix does once
// a path is done.
func (l *PathLock) Unlock() {
	for i, f := range l.files {
		// Remove before unlocking, so that a waiter that then locks the
		// file it opened still excludes a newcomer that creates a new one;
		// the waiter re-checks validity after locking anyway.
		os.Remove(l.locks.store.lockFileName(l.bases[i]))
		f.unlock()
	}
	l.locks.mu.Lock()
	for _, b := range l.bases {
		if ch, ok := l.locks.held[b]; ok {
			close(ch)
			delete(l.locks.held, b)
		}
	}
	l.locks.mu.Unlock()
	l.files, l.bases = nil, nil
}

// isHeld reports whether this process holds the lock of the path with
// base name base.
func (pl *PathLocks) isHeld(base string) bool {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	_, ok := pl.held[base]
	return ok
}
