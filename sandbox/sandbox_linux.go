package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// init finishes New on Linux: the uid pool (when we are root, like Nix's
// build users) and a check that builds can get their namespaces.
func (r *Runner) init() error {
	r.uid, r.gid = os.Getuid(), os.Getgid()
	if len(seccompFilter) == 0 {
		return fmt.Errorf("sandbox: no seccomp filter for %s (see internal/seccompgen)", runtime.GOARCH)
	}
	if r.uid == 0 {
		pool, err := newUIDPool(r.opts.UIDLockDir, r.opts.StartID, r.opts.IDCount)
		if err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
		r.pool = pool
	}
	r.spawner = &spawnerRef{logger: r.logger}
	if !r.opts.Disabled {
		if err := checkNamespaces(); err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
		// Only builtin builds need these, and fail without them.
		r.stageBinds, r.stageErr = builtinStageBinds()
		// Where the sandbox's root lives: see rootKind.
		switch {
		case !mountAPIWorks(r.uid == 0):
			r.rootKind = rootDisk
		case r.uid == 0:
			r.rootKind = rootTmpfs
		default:
			r.rootKind = rootTmpfsChild
		}
		// The spawner needs pidfds; without them we clone the children
		// ourselves, as before Linux 5.3 there was no other way.
		r.useSpawner = pidfdsWork()
		if r.uid == 0 {
			r.spawner.cred = &syscall.Credential{Uid: 0, Gid: uint32(r.gid), Groups: []uint32{}}
		}
		if r.useSpawner {
			r.warm = &warmPool{sr: r.spawner, pool: r.pool, uid: r.uid, gid: r.gid, logger: r.logger}
		}
		// A Runner dropped without Close stops its warm child and
		// spawner when collected, as an *os.File closes its descriptor.
		runtime.AddCleanup(r, closeHelpers, helpers{r.warm, r.spawner})
	}
	return nil
}

// pidfdsWork reports whether the kernel has pidfd_open (Linux 5.3), and
// with it CLONE_PIDFD, pidfd_send_signal and pidfds that poll readable
// when their process exits, which the spawner needs.
func pidfdsWork() bool {
	fd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

// Close stops the Runner's spawner process, if it started one (see
// protocol.go): builds still running are killed, and their Run returns an
// error. Run fails after Close. Close does not wait for running Runs to
// return; call it once they did, when the Runner is no longer needed.
// It may be called more than once, and concurrently with Run.
//
// A Runner that is dropped without Close stops its spawner when it is
// garbage-collected, and the spawner dies with our process in any case.
func (r *Runner) Close() error {
	closeHelpers(helpers{r.warm, r.spawner})
	return nil
}

// helpers are the processes a Runner may keep between builds.
type helpers struct {
	warm    *warmPool // nil when there is none
	spawner *spawnerRef
}

// closeHelpers stops h: the warm child first, which the spawner may
// still reap.
func closeHelpers(h helpers) {
	if h.warm != nil {
		h.warm.close()
	}
	h.spawner.close()
}

// checkNamespaces looks for the obvious reasons why clone would refuse a
// user namespace, to fail in New with a clear message rather than in
// every Run.
func checkNamespaces() error {
	if _, err := os.Stat("/proc/self/ns/user"); err != nil {
		return fmt.Errorf("%w: /proc/self/ns/user is missing (kernel without CONFIG_USER_NS?)", ErrNoNamespaces)
	}
	if b, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err == nil && strings.TrimSpace(string(b)) == "0" {
		return fmt.Errorf("%w: /proc/sys/user/max_user_namespaces is 0", ErrNoNamespaces)
	}
	return nil
}

// Run runs the builder of spec and waits for it. The builder's stdout and
// stderr (one pty, raw mode) go to log as they come.
//
// A builder that fails is not an error: see Result. Run returns a
// *SetupError when the build environment could not be set up,
// context.Cause(ctx) when ctx was cancelled (after killing the build), or
// log's error (after killing the build) when writing to log fails; the
// caller uses that to enforce max-build-log-size. With those two the
// Result is returned as well, so that a kept build directory can be
// found. Whatever happened, when Run returns no process of the build is
// left, nothing is mounted, and nothing Run made is left on disk except
// the moved outputs and a kept build directory.
func (r *Runner) Run(ctx context.Context, spec *Spec, log io.Writer) (res *Result, err error) {
	if err := spec.validate(); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	if ctx.Err() != nil {
		return nil, context.Cause(ctx)
	}
	if r.spawner.isClosed() {
		return nil, errRunnerClosed
	}
	// A fixed-output build needs a child without a network namespace,
	// which the warm one is not. The next warm child is asked for once
	// this build's child no longer sets up its sandbox (see run), or
	// here, when it never did.
	if r.warm != nil && !spec.FixedOutput {
		defer r.warm.kick()
		if w := r.warm.take(); w != nil {
			res, retry, err := r.runBuild(ctx, spec, log, w)
			if !retry {
				return res, err
			}
			r.logger.Debug("pre-spawned sandbox child died; starting one", "name", spec.Name, "err", err)
		}
	}
	res, _, err = r.runBuild(ctx, spec, log, nil)
	return res, err
}

// runBuild runs one build, in the warm child w if not nil. It reports
// retry when w died before it started the builder, and ctx has not
// ended: the build left nothing, and may start again in a cold child.
func (r *Runner) runBuild(ctx context.Context, spec *Spec, log io.Writer, w *warmChild) (res *Result, retry bool, err error) {
	b := &build{
		r:         r,
		spec:      spec,
		sandboxed: !r.opts.Disabled,
		uid:       r.uid,
		gid:       r.gid,
	}
	var slot *uidSlot
	switch {
	case w != nil:
		slot = w.slot
		b.adopt(w)
	case r.pool != nil:
		if slot, err = r.pool.acquire(); err != nil {
			return nil, false, fmt.Errorf("sandbox: %w", err)
		}
		b.uid, b.gid = slot.uid, slot.gid
	}
	if slot != nil {
		defer slot.release() // deferred first, so it runs last
	}
	b.logger = r.logger.With("name", spec.Name, "uid", b.uid)
	defer func() {
		cerr := b.cleanup(ctx)
		if cerr != nil {
			err = errors.Join(err, cerr)
		}
		retry = b.warmDied && cerr == nil && ctx.Err() == nil
	}()
	res, err = b.run(ctx, log)
	return res, false, err
}

// adopt makes the warm child w the build's: its ids, pty and socket,
// and its start, which awaitStart waits for as for a cold child's.
func (b *build) adopt(w *warmChild) {
	b.warm = true
	b.uid, b.gid = w.uid, w.gid
	b.master, b.slave = w.master, w.slave
	b.status, b.childSock = w.status, w.childSock
	b.starting, b.startc = w.c, w.c.startc
}

// build is the state of one Run.
type build struct {
	r         *Runner
	spec      *Spec
	logger    *slog.Logger
	sandboxed bool
	uid, gid  int // host ids of the builder

	buildDir string      // host build directory, once made
	chroot   *chrootPlan // the chroot, once made (sandboxed only)

	master    *os.File // pty master: builder output
	slave     *os.File // pty slave, until the child has it
	status    *os.File // our end of the config/status socket
	childSock *os.File // the child's end, until the child has it

	startc   <-chan error // the start's outcome, until awaitStart took it
	starting child        // the child being started, until awaitStart
	startErr error        // what awaitStart returned
	warm     bool         // the child is a warm one (see warm_linux.go)
	warmDied bool         // it died before it started the builder
	proc     child        // the child, once started
	waited   bool         // proc.wait was called
	started  bool         // the builder was executed

	pumpDone chan struct{} // closed when the log pump returns
	logErr   error         // the log writer's error; read after pumpDone
}

// child is the sandbox child, started by us (localChild) or by the
// spawner (spawnedChild).
type child interface {
	pid() int
	// kill sends SIGKILL to the child (to its process group too,
	// unsandboxed), never to a process that reused its pid.
	kill()
	// wait waits until the child exited; called once. After ctx ended
	// (and the child was killed), it may return without the wait status
	// once the child is gone.
	wait(ctx context.Context) exitStatus
}

var (
	_ child = (*localChild)(nil)
	_ child = (*spawnedChild)(nil)
)

// exitStatus is how the child ended: its wait status, or why that is
// unknown.
type exitStatus struct {
	ws  syscall.WaitStatus
	err error
}

// String describes ws as os.ProcessState does.
func (st exitStatus) String() string {
	switch {
	case st.err != nil:
		return st.err.Error()
	case st.ws.Signaled():
		s := "signal: " + st.ws.Signal().String()
		if st.ws.CoreDump() {
			s += " (core dumped)"
		}
		return s
	default:
		return "exit status " + strconv.Itoa(st.ws.ExitStatus())
	}
}

func (b *build) run(ctx context.Context, log io.Writer) (res *Result, err error) {
	spec := b.spec
	o := owner{uid: b.uid, gid: b.gid, chown: b.r.uid == 0}
	if !b.sandboxed {
		// Without a chroot, HOME would be a real path: it must not exist,
		// or builds would depend on what is in it (Nix 2.8's check).
		if _, err := os.Lstat(homelessShelter); err == nil {
			return nil, &SetupError{Step: "build directory", Err: fmt.Errorf("home directory %s exists; please remove it to assure purity of builds without sandboxing", homelessShelter)}
		}
	}

	if !b.warm {
		ptyOwner := -1
		if o.chown {
			ptyOwner = b.uid
		}
		master, slave, err := openPty(ptyOwner)
		if err != nil {
			return nil, &SetupError{Step: "pty", Err: err}
		}
		b.master = master

		// Start the child first: it is cloned, and its Go runtime
		// boots, while we prepare the chroot, which it needs only once
		// it reads its configuration.
		b.slave = slave
		if err := b.startChild(); err != nil {
			return nil, err
		}
	}

	buildTop := sandboxBuildDir
	cfg := &childConfig{
		Dir:     sandboxBuildDir,
		SetUser: true,
		UID:     sandboxUID,
		GID:     sandboxGID,
		Linux32: linux32(spec.System),
		Uname26: b.r.opts.ImpersonateLinux26 && (spec.System == "x86_64-linux" || spec.System == "i686-linux"),
		Builder: spec.Builder,
		Argv:    append([]string{path.Base(spec.Builder)}, spec.Args...),
	}
	if isBuiltin(spec.Builder) {
		cfg.Builtin = newBuiltinConfig(spec)
	}
	b.buildDir, err = makeBuildDir(spec, o)
	if err != nil {
		return nil, &SetupError{Step: "build directory", Err: err}
	}
	if b.sandboxed {
		var extra []bindMount
		if cfg.Builtin != nil {
			if b.r.stageErr != nil {
				return nil, &SetupError{Step: "builtin builder", Err: b.r.stageErr}
			}
			extra = b.r.stageBinds
		}
		plan, err := prepareChroot(spec, b.buildDir, o, b.r.rootKind, b.r.opts.KVM, extra)
		if err != nil {
			return nil, err
		}
		b.chroot = plan
		cfg.Sandbox = &plan.cfg
		b.logger.Debug("chroot prepared", "root", plan.cfg.RootFS, "store", plan.store, "binds", len(plan.cfg.Binds))
	} else {
		buildTop = b.buildDir
		cfg.Dir = b.buildDir
		// As root, the builder runs as the slot's uid, like a Nix build
		// user; otherwise as us.
		cfg.SetUser, cfg.UID, cfg.GID = o.chown, b.uid, b.gid
	}
	cfg.Env = builderEnv(spec, buildTop)

	if err := b.awaitStart(ctx); err != nil {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, err
	}

	b.pumpDone = make(chan struct{})
	go b.pump(log)

	// Cancelling ctx kills the build. The kill must be over before Run
	// returns and the uid slot is released (killUID would otherwise hit
	// the slot's next build).
	killed := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(killed)
		b.kill()
	})
	defer func() {
		if !stop() {
			<-killed
		}
	}()

	if err := b.handshake(ctx, cfg); err != nil {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, err
	}
	b.started = true
	if b.warm {
		b.r.warm.used.Add(1)
	}
	if b.r.warm != nil && !spec.FixedOutput {
		// Now, not earlier: the next child's clone (its mount
		// namespace copies the host's mount table) would compete with
		// this child's mounts, and both would be slower.
		b.r.warm.kick()
	}
	b.logger.Debug("builder started", "pid", b.proc.pid(), "warm", b.warm)

	st := b.wait(ctx)
	if !b.sandboxed && b.r.uid == 0 {
		// Unsandboxed builds have no pid namespace to end with them: kill
		// whatever they left running as the build user, as Nix does.
		killUID(b.uid)
	}
	b.finishPump(ctx)
	if st.err != nil {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, fmt.Errorf("waiting for builder: %w", st.err)
	}

	res = &Result{UID: b.uid, GID: b.gid}
	ws := st.ws
	if ws.Signaled() {
		res.ExitCode, res.Signal = -1, ws.Signal()
	} else {
		res.ExitCode = ws.ExitStatus()
	}
	if spec.KeepBuildDir {
		res.BuildDir = b.buildDir
	}
	if ctx.Err() != nil {
		return res, context.Cause(ctx)
	}
	if b.logErr != nil {
		return res, b.logErr
	}
	if err := b.moveOutputs(); err != nil {
		return res, err
	}
	b.logger.Debug("builder finished", "exit", res.ExitCode, "signal", res.Signal)
	return res, nil
}

// startChild begins to start the sandbox child, with b.slave as its
// stdout and stderr; awaitStart waits for the start to be done.
//
// A sandboxed child is cloned by the Runner's spawner (see protocol.go),
// or by us where the kernel has no pidfds; an unsandboxed one by us,
// which costs little: without a new user namespace, the clone is a vfork.
func (b *build) startChild() (err error) {
	defer func() {
		if err != nil { // nothing was started: awaitStart will not close these
			b.slave.Close()
			if b.childSock != nil {
				b.childSock.Close()
			}
		}
	}()
	if b.status, b.childSock, err = newConfigSocket(); err != nil {
		return &SetupError{Step: "start", Err: err}
	}
	if b.sandboxed && b.r.useSpawner {
		return b.startSpawned()
	}
	return b.startLocal()
}

// newConfigSocket returns the two ends of a child's config socket: ours
// and the child's.
func newConfigSocket() (status, childSock *os.File, err error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	// Our end is non-blocking, so reads park the goroutine and Close can
	// interrupt them.
	if err := syscall.SetNonblock(fds[0], true); err != nil {
		syscall.Close(fds[0])
		syscall.Close(fds[1])
		return nil, nil, os.NewSyscallError("fcntl", err)
	}
	return os.NewFile(uintptr(fds[0]), "sandbox-status"), os.NewFile(uintptr(fds[1]), "sandbox-config"), nil
}

// startSpawned asks the Runner's spawner to start the child. A spawner
// found dead when asked, which it may have been since the last build, is
// replaced once: the request did not reach it, so nothing was started.
// After that, its death fails the build.
func (b *build) startSpawned() error {
	req := spawnRequest{UID: b.uid, GID: b.gid, HostNetwork: b.spec.FixedOutput}
	var err error
	for range 2 {
		var sp *spawnerConn
		if sp, err = b.r.spawner.get(); err != nil {
			break
		}
		var c *spawnedChild
		if c, err = sp.spawn(req, b.slave, b.childSock); err == nil {
			b.starting, b.startc = c, c.startc
			return nil
		}
	}
	return &SetupError{Step: "start", Err: err}
}

// startLocal starts the child ourselves.
//
// The child is started, and waited for, by a goroutine locked to its OS
// thread, which exits (and so ends the thread) only after the child died,
// for two reasons. The child's parent-death signal belongs to the thread
// that forked it, so that thread must live as long as the child. And when
// we are root, the thread drops its supplementary groups before forking
// a sandboxed child, because the child cannot drop them in a user
// namespace whose setgroups is "deny" (Nix drops them in a helper process
// for the same reason, and so does our spawner); the thread must not run
// other goroutines afterwards.
func (b *build) startLocal() error {
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return &SetupError{Step: "start", Err: err}
	}
	// A session of its own: no controlling terminal, no terminal signals.
	sys := &syscall.SysProcAttr{Setsid: true}
	if b.sandboxed {
		sys = childProcAttr(b.uid, b.gid, b.spec.FixedOutput)
	}
	attr := &os.ProcAttr{
		Env:   childEnv(),
		Files: []*os.File{devNull, b.slave, b.slave, b.childSock},
		Sys:   sys,
	}
	dropGroups := b.sandboxed && b.r.uid == 0

	c := &localChild{group: !b.sandboxed, exitc: make(chan exitStatus, 1)}
	startc := make(chan error, 1)
	b.starting, b.startc = c, startc
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: this goroutine's exit must end the thread.
		if dropGroups {
			// The raw syscall changes only this thread, unlike
			// syscall.Setgroups.
			if _, _, e := syscall.RawSyscall(syscall.SYS_SETGROUPS, 0, 0, 0); e != 0 {
				devNull.Close()
				startc <- os.NewSyscallError("setgroups", e)
				return
			}
		}
		p, err := os.StartProcess("/proc/self/exe", childArgv(), attr)
		devNull.Close()
		if err != nil {
			startc <- err
			return
		}
		c.p = p
		startc <- nil
		st, err := p.Wait()
		c.exited.Store(true)
		if err != nil {
			c.exitc <- exitStatus{err: err}
			return
		}
		c.exitc <- exitStatus{ws: st.Sys().(syscall.WaitStatus)}
	}()
	return nil
}

// childArgv is the sandbox child's argv: our binary, told to be the child.
func childArgv() []string { return []string{"storefs-sandbox", childArg} }

// childEnv is the sandbox child's environment. It reads nothing but its
// config socket, so its environment is only for its Go runtime: one P is
// all it needs, and starts faster.
func childEnv() []string { return []string{"GOMAXPROCS=1"} }

// awaitStart waits, once, until the child was cloned and executed our
// binary, or failed to be. Then our copies of the descriptors it
// inherited go: else the pty would never report that the build's
// processes are gone, nor the socket that the child executed the builder.
// Until then they must stay open: the clone copies them.
//
// The spawner answers only when it gets to it, so a spawned child's start
// is not waited for past the end of ctx: it is abandoned, and returns
// context.Cause(ctx). A child that the spawner starts after that is
// killed at once (see spawnedChild.abandon); it had not read its
// configuration, so it never ran as the build user nor mounted anything.
func (b *build) awaitStart(ctx context.Context) error {
	if b.startc == nil {
		return b.startErr
	}
	var err error
	abandoned := false
	select {
	case err = <-b.startc:
	case <-ctx.Done():
		if c, ok := b.starting.(*spawnedChild); ok && c.abandon() {
			abandoned = true
		} else {
			err = <-b.startc // it started or failed meanwhile
		}
	}
	b.startc = nil
	b.slave.Close()
	b.childSock.Close()
	switch {
	case abandoned:
		b.startErr = context.Cause(ctx)
	case err == nil:
		b.proc = b.starting
	default:
		b.warmDied = b.warm
		if b.sandboxed && (errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EUSERS)) {
			err = fmt.Errorf("%w: %w", ErrNoNamespaces, err)
		}
		b.startErr = &SetupError{Step: "start", Err: err}
	}
	b.starting = nil
	return b.startErr
}

// childProcAttr returns how a sandboxed child is cloned: with new user,
// mount, pid, ipc and uts namespaces, and a network namespace unless
// hostNetwork (fixed-output derivations); in the user namespace only the
// build user and group exist, mapped to the host ids uid and gid (the
// slot's, or ours when we are not root). The child is not mapped itself,
// so it would lose its capabilities in that namespace when it execs our
// binary; they survive as ambient capabilities (dropped again before the
// builder's exec).
func childProcAttr(uid, gid int, hostNetwork bool) *syscall.SysProcAttr {
	flags := uintptr(syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS)
	if !hostNetwork {
		flags |= syscall.CLONE_NEWNET
	}
	return &syscall.SysProcAttr{
		// A session of its own: no controlling terminal, no terminal
		// signals.
		Setsid:      true,
		Cloneflags:  flags,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: sandboxUID, HostID: uid, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: sandboxGID, HostID: gid, Size: 1}},
		AmbientCaps: []uintptr{
			unix.CAP_SYS_ADMIN, // mount, pivot_root, sethostname
			unix.CAP_NET_ADMIN, // bring up lo
			unix.CAP_SETUID,    // become the build user
			unix.CAP_SETGID,
			// chdir into /build (mode 0700, the build user's) before
			// becoming the build user, in the order of runChild.
			unix.CAP_DAC_READ_SEARCH,
		},
		// Pdeathsig cannot be used here: the child's getppid() is 0 in
		// its pid namespace, which makes package syscall think the
		// parent died. The child sets it itself.
	}
}

// handshake sends the child its configuration and waits until it
// either executed the builder or failed (see protocol.go).
func (b *build) handshake(ctx context.Context, cfg *childConfig) error {
	data, err := json.Marshal(cfg)
	if err != nil {
		return &SetupError{Step: "start", Err: err}
	}
	// A write error means the child is gone; reading tells us why.
	var rootFS *os.File
	if b.chroot != nil {
		rootFS = b.chroot.rootFS
	}
	werr := writeConfig(b.status, data, rootFS)
	if rootFS != nil {
		// The socket, or the child, holds it now; else the tmpfs would
		// outlive the child until Run returns.
		rootFS.Close()
		b.chroot.rootFS = nil
	}
	status, rerr := io.ReadAll(b.status)
	ready, failure, perr := parseStatus(status)
	if failure != nil {
		b.wait(ctx) // the child exits after reporting
		return &SetupError{Step: failure.Step, Err: failure.err()}
	}
	if ready && rerr == nil && perr == nil {
		return nil
	}
	// The child died without a word: a crash (its stderr is the build
	// log), a kill, or the death of the spawner.
	st := b.wait(ctx)
	b.warmDied = b.warm
	why := "sandbox child died before the builder started (" + st.String() + ")"
	for _, err := range []error{perr, rerr, werr} {
		if err != nil {
			why += "; " + err.Error()
		}
	}
	return &SetupError{Step: "start", Err: errors.New(why)}
}

// writeConfig writes data to the child's config socket, with fd, if not
// nil, in SCM_RIGHTS along with its first bytes.
func writeConfig(sock *os.File, data []byte, fd *os.File) error {
	if fd != nil {
		rc, err := sock.SyscallConn()
		if err != nil {
			return err
		}
		rights := unix.UnixRights(int(fd.Fd()))
		var n int
		var serr error
		if err := rc.Write(func(s uintptr) bool {
			n, serr = unix.SendmsgN(int(s), data, rights, nil, unix.MSG_NOSIGNAL)
			return serr != unix.EAGAIN // else wait until the child reads
		}); err != nil {
			return err
		}
		if serr != nil {
			return os.NewSyscallError("sendmsg", serr)
		}
		data = data[n:]
	}
	_, err := sock.Write(data)
	return err
}

// pump copies builder output from the pty to log until the pty reports
// that every process holding the slave is gone (EIO), or log fails; then it
// kills the build.
func (b *build) pump(log io.Writer) {
	defer close(b.pumpDone)
	buf := make([]byte, 32<<10)
	for {
		n, err := b.master.Read(buf)
		if n > 0 {
			if _, werr := log.Write(buf[:n]); werr != nil {
				b.logErr = werr
				b.kill()
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// finishPump waits for the pump to drain the pty. In a sandbox that ends
// as soon as the pid namespace is gone. An unsandboxed build may leave a
// process holding the pty (like in Nix, the build then lasts until that
// process goes, or ctx ends it).
func (b *build) finishPump(ctx context.Context) {
	select {
	case <-b.pumpDone:
		return
	case <-ctx.Done():
	}
	b.master.Close() // unblocks the pump's Read
	<-b.pumpDone
}

// kill kills the build. For a sandbox, killing the pid namespace's init
// (the builder) is enough: the kernel kills everything else in the
// namespace before the builder's death is reported.
func (b *build) kill() {
	if b.proc == nil {
		return
	}
	b.proc.kill()
	if !b.sandboxed && b.r.uid == 0 {
		killUID(b.uid)
	}
}

// wait waits for the child's exit, once.
func (b *build) wait(ctx context.Context) exitStatus {
	if b.waited {
		return exitStatus{err: errors.New("already waited")}
	}
	b.waited = true
	return b.proc.wait(ctx)
}

// localChild is a child we started ourselves (startLocal).
type localChild struct {
	p      *os.Process // set before the start is reported
	group  bool        // kill its process group too (unsandboxed)
	exited atomic.Bool // p has been reaped
	exitc  chan exitStatus
}

func (c *localChild) pid() int { return c.p.Pid }

func (c *localChild) kill() {
	if c.group && !c.exited.Load() {
		syscall.Kill(-c.p.Pid, syscall.SIGKILL) // its session's process group
	}
	c.p.Kill() // by pidfd: never hits a reused pid
}

// wait ignores ctx: we reap the child ourselves, and so know when it
// is gone.
func (c *localChild) wait(context.Context) exitStatus { return <-c.exitc }

// moveOutputs renames each output the builder created to
// OutputDir/<base name>.
func (b *build) moveOutputs() error {
	for _, out := range b.spec.Outputs {
		src := out // unsandboxed: outputs are at their real paths
		if b.chroot != nil {
			src = filepath.Join(b.chroot.store, path.Base(out))
		}
		st, err := os.Lstat(src)
		if errors.Is(err, fs.ErrNotExist) {
			continue // the caller reports missing outputs
		}
		if err != nil {
			return fmt.Errorf("moving output %s: %w", out, err)
		}
		dst := filepath.Join(b.spec.OutputDir, path.Base(out))
		if err := movePath(src, dst, st); err != nil {
			return fmt.Errorf("moving output %s: %w", out, err)
		}
	}
	return nil
}

// movePath renames src to dst, which must not exist. Moving a directory to
// another parent rewrites its "..", which needs write permission on it:
// when we are not root and it has none, it gets it for the rename, as in
// Nix's movePath.
func movePath(src, dst string, st fs.FileInfo) error {
	changePerm := os.Geteuid() != 0 && st.IsDir() && st.Mode().Perm()&0o200 == 0
	if changePerm {
		if err := os.Chmod(src, st.Mode().Perm()|0o200); err != nil {
			return err
		}
	}
	if err := unix.Renameat2(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE); err != nil {
		return &os.LinkError{Op: "rename", Old: src, New: dst, Err: err}
	}
	if changePerm {
		return os.Chmod(dst, st.Mode().Perm())
	}
	return nil
}

// cleanup runs when Run returns, whatever happened: it kills and reaps the
// child if still needed, stops the pump, and removes the chroot and (unless
// kept) the build directory.
func (b *build) cleanup(ctx context.Context) error {
	b.awaitStart(ctx)
	if b.proc != nil && !b.waited {
		b.kill()
		b.wait(ctx)
	}
	if b.master != nil {
		b.master.Close()
		if b.pumpDone != nil {
			<-b.pumpDone
		}
	}
	if b.status != nil {
		b.status.Close()
	}
	var errs []error
	if c := b.chroot; c != nil {
		if c.rootFS != nil {
			c.rootFS.Close()
		}
		for _, dir := range []string{c.store, c.root} {
			if dir == "" {
				continue
			}
			if err := removeTree(dir); err != nil {
				errs = append(errs, fmt.Errorf("removing chroot: %w", err))
			}
		}
	}
	// A build directory is kept only for a builder that ran: after a
	// setup failure no Result tells the caller where it is.
	if b.buildDir != "" && !(b.spec.KeepBuildDir && b.started) {
		if err := removeTree(b.buildDir); err != nil {
			errs = append(errs, fmt.Errorf("removing build directory: %w", err))
		}
	}
	return errors.Join(errs...)
}

// linux32 reports whether system needs the 32-bit personality, as in Nix
// 2.8's setPersonality.
func linux32(system string) bool {
	switch system {
	case "i686-linux":
		return runtime.GOARCH == "amd64"
	case "armv7l-linux", "armv6l-linux":
		return true
	}
	return false
}
