package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// This file is the spawner process: it clones sandbox children for one
// Runner, so that the clone copies its small address space rather than
// the Runner's (see "The spawner" in protocol.go). The Runner's side is
// spawner_conn_linux.go.
//
// The spawner serves requests until EOF on its socket, each in its own
// goroutine, locked to its OS thread from the clone until the child was
// reaped: the child's parent-death signal belongs to that thread. It
// logs nothing (it has no logger) and touches no file: what can fail
// goes back to the Runner in a reply.

// spawnerMain is the spawner's main; it returns the exit status.
func spawnerMain() int {
	f := os.NewFile(spawnerFD, "sandbox-spawner")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "sandbox spawner: %v\n", err)
		return 1
	}
	conn, ok := c.(*net.UnixConn)
	if !ok {
		fmt.Fprintf(os.Stderr, "sandbox spawner: fd %d is not a unix socket\n", spawnerFD)
		return 1
	}
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sandbox spawner: %v\n", err)
		return 1
	}
	s := &spawnerProc{conn: conn, devNull: devNull, pidfds: make(map[uint64]int)}
	s.serve()
	return 0
}

// spawnerProc is the state of the spawner process.
type spawnerProc struct {
	conn    *net.UnixConn
	devNull *os.File // every child's stdin

	mu      sync.Mutex
	pidfds  map[uint64]int // the children not reaped yet, by request id
	closing bool           // EOF was read: kill children as they come
	wg      sync.WaitGroup // the goroutines of spawn
}

// serve reads requests until EOF, then kills the children still running
// and waits until they are reaped.
func (s *spawnerProc) serve() {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*4))
	for {
		n, oobn, flags, _, err := s.conn.ReadMsgUnix(buf, oob)
		if err != nil || n == 0 {
			break // EOF: the Runner closed, or died
		}
		fds, ferr := parseRights(oob[:oobn])
		var req spawnRequest
		jerr := json.Unmarshal(buf[:n], &req)
		if err := errors.Join(ferr, jerr); err != nil || len(fds) != 2 || flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
			// Our own Runner sent it: a broken invariant, but one
			// that fails that build only.
			closeFds(fds)
			s.reply(&spawnReply{Kind: spawnFailed, ID: req.ID, Failure: newSetupFailure("start",
				fmt.Errorf("sandbox spawner: malformed request (%d fds, flags %#x): %v", len(fds), flags, err))}, -1)
			continue
		}
		s.wg.Add(1)
		go s.spawn(&req, os.NewFile(uintptr(fds[0]), "pty-slave"), os.NewFile(uintptr(fds[1]), "sandbox-config"))
	}
	s.mu.Lock()
	s.closing = true
	for _, fd := range s.pidfds {
		unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// spawn clones and executes the sandbox child of req, reports it
// started, waits for it and reports its exit.
func (s *spawnerProc) spawn(req *spawnRequest, slave, sock *os.File) {
	defer s.wg.Done()
	// The child's parent-death signal, which it sets itself, belongs to
	// this thread: no other goroutine may run on it, nor may it end,
	// while the child lives.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	pidfd := -1
	sys := childProcAttr(req.UID, req.GID, req.HostNetwork)
	sys.PidFD = &pidfd
	p, err := os.StartProcess("/proc/self/exe", childArgv(), &os.ProcAttr{
		Env:   childEnv(),
		Files: []*os.File{s.devNull, slave, slave, sock},
		Sys:   sys,
	})
	// The child has its copies; the pty reports the build's end only
	// once every copy of the slave is closed.
	slave.Close()
	sock.Close()
	if err != nil {
		s.reply(&spawnReply{Kind: spawnFailed, ID: req.ID, Failure: newSetupFailure("start", err)}, -1)
		return
	}
	if pidfd < 0 { // the Runner uses a spawner only where pidfds work
		p.Kill()
		p.Wait()
		s.reply(&spawnReply{Kind: spawnFailed, ID: req.ID, Failure: newSetupFailure("start", errors.New("sandbox spawner: no pidfd for the child"))}, -1)
		return
	}
	s.mu.Lock()
	s.pidfds[req.ID] = pidfd
	if s.closing {
		unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
	}
	s.mu.Unlock()

	s.reply(&spawnReply{Kind: spawnStarted, ID: req.ID, Pid: p.Pid}, pidfd)
	st, err := p.Wait()

	s.mu.Lock()
	delete(s.pidfds, req.ID)
	unix.Close(pidfd)
	s.mu.Unlock()
	rep := &spawnReply{Kind: spawnExited, ID: req.ID}
	if err != nil {
		rep.Failure = newSetupFailure("wait", err)
	} else {
		rep.Status = uint32(st.Sys().(syscall.WaitStatus))
	}
	s.reply(rep, -1)
}

// reply sends rep, with fd in SCM_RIGHTS unless it is -1. A failure means
// the Runner is gone: the EOF ends serve.
func (s *spawnerProc) reply(rep *spawnReply, fd int) {
	data, err := json.Marshal(rep)
	if err != nil {
		panic("sandbox: invariant broken: spawnReply does not marshal: " + err.Error())
	}
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	s.conn.WriteMsgUnix(data, oob, nil) // a packet: concurrent replies do not mix
}

// parseRights returns the fds of the SCM_RIGHTS messages in oob.
func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, os.NewSyscallError("parsing control message", err)
	}
	var fds []int
	for i := range msgs {
		rights, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			continue // not SCM_RIGHTS
		}
		fds = append(fds, rights...)
	}
	return fds, nil
}

func closeFds(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
