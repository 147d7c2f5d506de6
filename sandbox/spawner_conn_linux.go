package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// This file is the Runner's side of the spawner (see "The spawner" in
// protocol.go; the spawner itself is spawner_linux.go): starting it,
// asking it for children, and the children it started.

// Errors that end builds whose child the spawner cloned.
var (
	// errSpawnerDied is what a build gets when its spawner died under
	// it. The next build starts a new spawner.
	errSpawnerDied = errors.New("the sandbox spawner died")
	// errRunnerClosed is what a build gets when Close stopped the
	// spawner under it, and what Run returns after Close.
	errRunnerClosed = errors.New("the sandbox runner is closed")
)

// spawnerExitTimeout is how long stopping a spawner waits for it to exit
// by itself (it kills its children and reaps them first) before killing
// it: a spawner that hangs must not hang Close.
const spawnerExitTimeout = 10 * time.Second

// spawnerReportTimeout is how long a build whose context ended waits for
// the spawner to report the exit of its killed child, which a spawner
// that works does at once, before it waits only until the child is gone
// and returns without its wait status: a spawner that hangs must not
// hang a cancelled build.
const spawnerReportTimeout = time.Second

// spawnerRef is a Runner's spawner: started by the first sandboxed build,
// started again by the build after the one it died under, stopped by
// Close. It holds no reference to the Runner, so that a Runner dropped
// without Close can be collected, and its spawner stopped.
type spawnerRef struct {
	// cred are the spawner's credentials: ours, without supplementary
	// groups, when we are root (which the children, in a user
	// namespace whose setgroups is "deny", cannot drop); nil otherwise.
	cred   *syscall.Credential
	logger *slog.Logger

	mu     sync.Mutex
	cur    *spawnerConn // nil before the first build and after Close
	closed bool
}

// get returns the spawner, starting one if there is none or it died.
func (sr *spawnerRef) get() (*spawnerConn, error) {
	sr.mu.Lock()
	defer sr.mu.Unlock()
	if sr.closed {
		return nil, errRunnerClosed
	}
	if sr.cur != nil {
		why := sr.cur.deathCause()
		if why == nil {
			return sr.cur, nil
		}
		sr.logger.Warn("sandbox spawner died; starting another", "err", why)
		sr.cur.stop() // already dead: this reaps it
		sr.cur = nil
	}
	sp, err := startSpawner(sr.cred)
	if err != nil {
		return nil, fmt.Errorf("starting the sandbox spawner: %w", err)
	}
	sr.logger.Debug("sandbox spawner started", "pid", sp.proc.Pid)
	sr.cur = sp
	return sp, nil
}

// close stops the spawner for good.
func (sr *spawnerRef) close() {
	sr.mu.Lock()
	defer sr.mu.Unlock()
	sr.closed = true
	if sr.cur != nil {
		sr.cur.stop()
		sr.cur = nil
	}
}

// isClosed reports whether close was called.
func (sr *spawnerRef) isClosed() bool {
	sr.mu.Lock()
	defer sr.mu.Unlock()
	return sr.closed
}

// spawnerConn is one spawner process and our socket to it. A goroutine
// (read) dispatches the replies to the children they are about; another
// (started by startSpawner) waits for the process.
type spawnerConn struct {
	conn   *net.UnixConn
	proc   *os.Process
	state  *os.ProcessState // how it ended, once exited is closed
	exited chan struct{}    // closed once the spawner was reaped
	readc  chan struct{}    // closed when read returns

	mu       sync.Mutex
	nextID   uint64
	children map[uint64]*spawnedChild // asked for and not reaped
	dead     error                    // why the spawner is unusable, once it is
	stopping bool                     // stop was called
}

// startSpawner starts a spawner process with credentials cred (nil: ours).
func startSpawner(cred *syscall.Credential) (sp *spawnerConn, err error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socketpair", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "sandbox-spawner")
	theirs := os.NewFile(uintptr(fds[1]), "sandbox-spawner")
	defer theirs.Close() // the spawner has its copy once started
	c, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		return nil, err
	}
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		c.Close()
		return nil, err
	}
	defer devNull.Close()
	sp = &spawnerConn{
		conn:     c.(*net.UnixConn),
		exited:   make(chan struct{}),
		readc:    make(chan struct{}),
		children: make(map[uint64]*spawnedChild),
	}
	attr := &os.ProcAttr{
		// Nothing from our environment: only what the runtime of a
		// race-enabled binary (the tests) needs to exit at once.
		Env: []string{"GORACE=atexit_sleep_ms=0"},
		// stderr stays ours: a spawner that panics says so there.
		Files: []*os.File{devNull, devNull, os.Stderr, theirs},
		Sys: &syscall.SysProcAttr{
			// No terminal signals: a ^C reaches us, and we cancel
			// builds; the spawner must not die of it first.
			Setsid:     true,
			Pdeathsig:  syscall.SIGKILL,
			Credential: cred,
		},
	}
	if len(attr.Files) != spawnerFD+1 {
		panic("sandbox: invariant broken: the spawner's socket must be its fd spawnerFD")
	}
	startc := make(chan error, 1)
	go func() {
		// The spawner's parent-death signal belongs to this thread,
		// which therefore runs nothing else until the spawner is gone.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		p, err := os.StartProcess("/proc/self/exe", []string{"storefs-sandbox-spawner", spawnerArg}, attr)
		if err != nil {
			startc <- err
			close(sp.exited)
			return
		}
		sp.proc = p
		startc <- nil
		sp.state, _ = p.Wait()
		close(sp.exited)
	}()
	if err := <-startc; err != nil {
		sp.conn.Close()
		return nil, err
	}
	go sp.read()
	return sp, nil
}

// spawn asks the spawner for a child with the pty slave and config
// socket given, and returns at once; the child's start channel says how
// the start went, and the caller keeps slave and sock open until then.
// An error means that the request did not reach the spawner, which is
// dead: a new one may be asked.
func (sp *spawnerConn) spawn(req spawnRequest, slave, sock *os.File) (*spawnedChild, error) {
	c := &spawnedChild{sp: sp, startc: make(chan error, 1), exitc: make(chan exitStatus, 1), pidfd: -1}
	sp.mu.Lock()
	if sp.dead != nil {
		sp.mu.Unlock()
		return nil, sp.dead
	}
	sp.nextID++
	req.ID, c.id = sp.nextID, sp.nextID
	sp.children[req.ID] = c
	sp.mu.Unlock()

	data, err := json.Marshal(&req)
	if err != nil {
		panic("sandbox: invariant broken: spawnRequest does not marshal: " + err.Error())
	}
	if _, _, err := sp.conn.WriteMsgUnix(data, unix.UnixRights(int(slave.Fd()), int(sock.Fd())), nil); err != nil {
		// The spawner is gone (EPIPE), or our socket broke: either
		// way it is of no more use. The packet was not sent.
		sp.mu.Lock()
		delete(sp.children, req.ID)
		sp.mu.Unlock()
		err = fmt.Errorf("%w: %w", errSpawnerDied, err)
		sp.fail(err)
		return nil, err
	}
	return c, nil
}

// read dispatches the spawner's replies until its socket fails or ends,
// then fails the children it had not reaped.
func (sp *spawnerConn) read() {
	defer close(sp.readc)
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*4))
	for {
		n, oobn, flags, _, err := sp.conn.ReadMsgUnix(buf, oob)
		if err != nil || n == 0 {
			sp.fail(sp.death(err))
			return
		}
		fds, ferr := parseRights(oob[:oobn])
		var rep spawnReply
		jerr := json.Unmarshal(buf[:n], &rep)
		if err := errors.Join(ferr, jerr); err != nil || flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
			closeFds(fds)
			sp.fail(fmt.Errorf("%w: malformed reply (flags %#x): %v", errSpawnerDied, flags, err))
			return
		}
		if !sp.deliver(&rep, fds) {
			closeFds(fds)
			sp.fail(fmt.Errorf("%w: unexpected reply %+v with %d fds", errSpawnerDied, rep, len(fds)))
			return
		}
	}
}

// deliver hands rep to its child; it reports false if rep is not what
// that child expects, a broken protocol.
func (sp *spawnerConn) deliver(rep *spawnReply, fds []int) bool {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	c := sp.children[rep.ID]
	if c == nil {
		return false
	}
	switch {
	case rep.Kind == spawnStarted && len(fds) == 1 && !c.started():
		c.setStarted(rep.Pid, fds[0])
		if c.abandoned {
			c.kill() // its exit closes the pidfd
		}
		c.startc <- nil
	case rep.Kind == spawnFailed && len(fds) == 0 && rep.Failure != nil && !c.started():
		delete(sp.children, rep.ID)
		c.startc <- rep.Failure.err()
	case rep.Kind == spawnExited && len(fds) == 0 && c.started():
		delete(sp.children, rep.ID)
		if c.abandoned {
			c.release()
			break
		}
		st := exitStatus{ws: syscall.WaitStatus(rep.Status)}
		if rep.Failure != nil {
			st.err = rep.Failure.err()
		}
		c.exitc <- st
	default:
		return false
	}
	return true
}

// death says why the spawner's socket ended (err, or EOF when nil):
// stop closed it, or the spawner exited and is about to be reaped (its
// wait status is added if that comes soon).
func (sp *spawnerConn) death(err error) error {
	sp.mu.Lock()
	stopping := sp.stopping
	sp.mu.Unlock()
	if stopping {
		return errRunnerClosed
	}
	select {
	case <-sp.exited:
		if sp.state != nil {
			return fmt.Errorf("%w (%v)", errSpawnerDied, sp.state)
		}
	case <-time.After(100 * time.Millisecond):
	}
	if err != nil {
		return fmt.Errorf("%w: %w", errSpawnerDied, err)
	}
	return errSpawnerDied
}

// fail makes the spawner unusable, with why as the cause: the children
// not started yet fail to start, the others are killed, and their wait
// ends with why (see spawnedChild.wait). The spawner process is killed
// too, in case it still lives.
func (sp *spawnerConn) fail(why error) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.dead != nil {
		return
	}
	sp.dead = why
	for id, c := range sp.children {
		delete(sp.children, id)
		switch {
		case c.abandoned:
			c.kill()
			c.release()
		case c.started():
			c.kill()
			c.exitc <- exitStatus{err: why}
		default:
			c.startc <- why
		}
	}
	sp.conn.Close() // ends read
	if !sp.stopping {
		// Dead already, or broken: it must go. By pidfd, so a
		// reaped spawner's pid is never mistaken.
		sp.proc.Kill()
	}
}

// deathCause returns why the spawner can no longer be used, or nil.
func (sp *spawnerConn) deathCause() error {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.dead
}

// stop stops the spawner and waits until it exited and read returned.
// Closing our end makes it kill its children, reap them and exit; the
// builds still running fail with errRunnerClosed.
func (sp *spawnerConn) stop() {
	sp.mu.Lock()
	sp.stopping = true
	sp.mu.Unlock()
	sp.conn.Close()
	<-sp.readc // read fails every child
	select {
	case <-sp.exited:
	case <-time.After(spawnerExitTimeout):
		sp.proc.Kill()
		<-sp.exited
	}
}

// spawnedChild is a sandbox child that the spawner cloned, as its build
// sees it.
type spawnedChild struct {
	sp     *spawnerConn
	id     uint64          // its spawnRequest's
	startc chan error      // how the start went; one value
	exitc  chan exitStatus // how it ended; one value, once started

	// abandoned is set (under sp.mu) when the build no longer waits
	// for the start: see abandon.
	abandoned bool

	mu    sync.Mutex
	pidv  int
	pidfd int // -1 until started, and after wait
}

// abandon gives up a child whose start the build no longer waits for:
// if it is started after all, it is killed at once and reaped without
// its build, which gets nothing more from it. It reports false if the
// start has already been reported (started or failed): the build must
// then take that report from startc.
func (c *spawnedChild) abandon() bool {
	c.sp.mu.Lock()
	defer c.sp.mu.Unlock()
	if c.sp.children[c.id] != c || c.started() {
		return false
	}
	c.abandoned = true
	return true
}

func (c *spawnedChild) setStarted(pid, pidfd int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pidv, c.pidfd = pid, pidfd
}

func (c *spawnedChild) started() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pidfd >= 0
}

func (c *spawnedChild) pid() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pidv
}

// kill sends SIGKILL through the pidfd, which refers to the child even
// after it was reaped (the kill then fails with ESRCH): never to a reused
// pid.
func (c *spawnedChild) kill() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pidfd >= 0 {
		unix.PidfdSendSignal(c.pidfd, unix.SIGKILL, nil, 0)
	}
}

// wait waits until the spawner reported the child's exit. If the spawner
// died instead, the child was killed (see fail) and, since it is not our
// child, its pidfd tells when it is gone: when it polls readable, the
// child is a zombie and, as the init of its pid namespace, the last of
// its build. Once ctx ended, the child is killed, and a spawner that
// does not report its exit soon (it hangs) is not waited for: the
// pidfd tells when the child is gone.
func (c *spawnedChild) wait(ctx context.Context) exitStatus {
	var st exitStatus
	select {
	case st = <-c.exitc:
	case <-ctx.Done():
		c.kill()
		select {
		case st = <-c.exitc:
		case <-time.After(spawnerReportTimeout):
			if pidfd, ok := c.abandonStarted(); ok {
				pollExit(pidfd)
				unix.Close(pidfd)
				return exitStatus{err: context.Cause(ctx)}
			}
			st = <-c.exitc // reported meanwhile
		}
	}
	c.mu.Lock()
	pidfd := c.pidfd // only wait closes it
	c.mu.Unlock()
	if st.err != nil {
		pollExit(pidfd)
	}
	c.release()
	return st
}

// abandonStarted gives up waiting for the spawner's report of the exit
// of a started child: the report then only releases the pidfd. It
// returns a duplicate of the pidfd, to poll, or false if the report came
// already (or the pidfd could not be duplicated): wait must then take
// it from exitc.
func (c *spawnedChild) abandonStarted() (pidfd int, ok bool) {
	c.sp.mu.Lock()
	defer c.sp.mu.Unlock()
	if c.sp.children[c.id] != c { // reported: exitc holds the status
		return -1, false
	}
	c.mu.Lock()
	pidfd, err := unix.FcntlInt(uintptr(c.pidfd), unix.F_DUPFD_CLOEXEC, 0)
	c.mu.Unlock()
	if err != nil {
		return -1, false
	}
	c.abandoned = true
	return pidfd, true
}

// release closes the pidfd.
func (c *spawnedChild) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pidfd >= 0 {
		unix.Close(c.pidfd)
		c.pidfd = -1
	}
}

// pollExit waits until pidfd polls readable: its process exited.
func pollExit(pidfd int) {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if err != unix.EINTR {
			return
		}
	}
}
