package sandbox

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// This file keeps one sandbox child started ahead of its build (see "The
// warm child" in protocol.go): cloned by the spawner, with its uid pool
// slot, pty and config socket, executed and blocked reading its
// configuration, so that a build hands its configuration to a child
// whose clone, namespaces and Go runtime are already paid for.

// warmIdle is how long a warm child waits for a build before it is
// discarded. Until it pivots into a build's root, a child's mount
// namespace holds a copy of the host's mount table, and with it every
// filesystem mounted when it was cloned: one unmounted lazily on the host
// meanwhile lives on until the child goes. That is the FUSE mount of
// `storefs mount` itself at shutdown, whose server returns only once the
// kernel let go of the mount, before the Runner is closed. So a warm
// child is kept only while builds come one after another, which is when
// it pays (a chain of dependencies, each build started as soon as the
// one before was registered).
const warmIdle = time.Second

// warmPool holds a Runner's warm child and starts the next one. It holds
// no reference to the Runner (see spawnerRef).
type warmPool struct {
	sr     *spawnerRef
	pool   *uidPool // nil when not root: children run as uid and gid
	uid    int      // our own ids
	gid    int
	logger *slog.Logger

	// used counts the builds that ran in a warm child, for the tests.
	used atomic.Uint64

	mu       sync.Mutex
	cur      *warmChild    // nil when none is ready or being started
	refilled chan struct{} // while a refill runs: closed when it ends
	closed   bool
	bg       sync.WaitGroup // refill and discard goroutines
}

// warmChild is a sandbox child started for no build yet: everything
// that the spawner fixes when it clones a child (the ids mapped, the
// network namespace, the pty slave as stdout and stderr) is what every
// build that is neither fixed-output nor unsandboxed gets.
type warmChild struct {
	slot      *uidSlot // nil when not root
	uid, gid  int      // host ids of the builder
	master    *os.File // pty master
	slave     *os.File // pty slave, held until the build's awaitStart
	status    *os.File // our end of the config socket
	childSock *os.File // the child's end, held until awaitStart
	c         *spawnedChild
}

// take returns the warm child, or nil, and starts the next one in the
// background. A warm child found dead (killed, or its spawner gone) is
// discarded: the build then starts cold.
func (wp *warmPool) take() *warmChild {
	wp.mu.Lock()
	defer wp.mu.Unlock()
	if wp.closed {
		return nil
	}
	for wp.refilled != nil {
		// The next child is being asked for, which takes less than
		// starting one cold.
		refilled := wp.refilled
		wp.mu.Unlock()
		<-refilled
		wp.mu.Lock()
	}
	if wp.closed {
		return nil
	}
	w := wp.cur
	wp.cur = nil
	if w != nil && !w.alive() {
		wp.logger.Debug("pre-spawned sandbox child died; starting one", "uid", w.uid)
		wp.bg.Add(1)
		go func() {
			defer wp.bg.Done()
			w.discard()
		}()
		return nil
	}
	return w
}

// refill starts a warm child. Failing is no error: the next build starts
// cold, and asks again.
func (wp *warmPool) refill() {
	defer wp.bg.Done()
	w, err := wp.prepare()
	var sp *spawnerConn
	if err == nil {
		sp, err = wp.sr.get()
	}
	wp.mu.Lock()
	if err == nil && wp.closed {
		err = errRunnerClosed
	}
	if err == nil {
		req := spawnRequest{UID: w.uid, GID: w.gid}
		if w.c, err = sp.spawn(req, w.slave, w.childSock); err == nil {
			wp.cur = w
			time.AfterFunc(warmIdle, func() { wp.expire(w) })
		}
	}
	close(wp.refilled)
	wp.refilled = nil
	wp.mu.Unlock()
	if err != nil {
		wp.logger.Debug("no pre-spawned sandbox child", "err", err)
		if w != nil {
			w.discard()
		}
	}
}

// expire discards w if no build took it.
func (wp *warmPool) expire(w *warmChild) {
	wp.mu.Lock()
	defer wp.mu.Unlock()
	if wp.cur != w { // taken, or discarded by close
		return
	}
	wp.cur = nil
	wp.bg.Add(1)
	go func() {
		defer wp.bg.Done()
		w.discard()
	}()
}

// prepare takes a uid slot and makes the pty and config socket of a warm
// child.
func (wp *warmPool) prepare() (*warmChild, error) {
	w := &warmChild{uid: wp.uid, gid: wp.gid}
	ptyOwner := -1
	if wp.pool != nil {
		slot, err := wp.pool.acquire()
		if err != nil {
			return nil, err
		}
		w.slot, w.uid, w.gid = slot, slot.uid, slot.gid
		ptyOwner = w.uid
	}
	var err error
	if w.master, w.slave, err = openPty(ptyOwner); err == nil {
		w.status, w.childSock, err = newConfigSocket()
	}
	if err != nil {
		w.discard()
		return nil, err
	}
	return w, nil
}

// close discards the warm child, once the goroutines that may make or
// discard one are done, and makes take return nil from now on.
func (wp *warmPool) close() {
	wp.mu.Lock()
	wp.closed = true
	w := wp.cur
	wp.cur = nil
	wp.mu.Unlock()
	wp.bg.Wait()
	if w != nil {
		w.discard()
	}
}

// kick starts a refill unless one runs.
func (wp *warmPool) kick() {
	wp.mu.Lock()
	defer wp.mu.Unlock()
	if wp.refilled == nil && !wp.closed && wp.cur == nil {
		wp.refilled = make(chan struct{})
		wp.bg.Add(1)
		go wp.refill()
	}
}

// alive reports whether the warm child may still take a configuration:
// its spawner lives, and it has not exited. One whose start is still
// under way counts as alive; the build waits for its start.
func (w *warmChild) alive() bool {
	return w.c.sp.deathCause() == nil && !w.c.exitedNow()
}

// discard kills the child, if it was asked for, waits until it is gone,
// and releases what it held; the uid slot goes last. A child whose start
// is still under way is abandoned: it dies before reading a configuration,
// so before running as the slot's uid (see spawnedChild.abandon).
func (w *warmChild) discard() {
	if c := w.c; c != nil && !c.abandon() {
		if err := <-c.startc; err == nil {
			c.kill()
			c.wait(context.Background())
		}
	}
	for _, f := range []*os.File{w.master, w.slave, w.status, w.childSock} {
		if f != nil {
			f.Close()
		}
	}
	if w.slot != nil {
		w.slot.release()
	}
}

// exitedNow reports whether the child is known to have exited: its pidfd
// polls readable. It reports false for a child not started yet.
func (c *spawnedChild) exitedNow() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pidfd < 0 {
		return false
	}
	fds := []unix.PollFd{{Fd: int32(c.pidfd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return n > 0 || (err != nil && !errors.Is(err, unix.EINTR))
}
