package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"syscall"
	"time"
)

// The parent (Run) and the sandbox child (the same binary, re-executed)
// talk over one Unix stream socket that the child inherits as fd configFD.
// Builder output never travels on it: it has its own pty.
//
//	parent (Run)                                   child (/proc/self/exe childArg)
//	────────────                                   ───────────────────────────────
//	socketpair: child end → fd 3 (configFD)
//	pty: slave → fd 1 and 2, /dev/null → fd 0
//	clone(NEWUSER|NEWNS|NEWPID|NEWIPC|NEWUTS[|NEWNET])
//	(done by the spawner, see below),
//	uid/gid maps written, execve(/proc/self/exe) ──► Go runtime starts,
//	                                                 RunChildIfRequested
//	prepare chroot and build dir
//	childConfig, one JSON value ───────────────────► decode it from fd 3
//	  + SCM_RIGHTS [root tmpfs mount]                 and keep the descriptor
//	    (rootTmpfs only, with its first bytes)
//	                                                 runChild: steps 1–7
//	                     ◄─────────────────────────  "\1\n"           ready: about to execve
//	                                                 execve(builder); fd 3 is close-on-exec
//	EOF on fd 3          ◄─────────────────────────  (execve succeeded)
//	builder output       ◄═════════ pty ══════════  builder's stdout and stderr
//	wait4 → Result
//
//	on a setup failure, at any step (also a failed execve after "ready"):
//	                     ◄─────────────────────────  "\1" + JSON setupFailure + "\n"
//	                                                 exit(childFailedExit)
//
//	a builtin builder ("builtin:…") instead, after step 7:
//	                     ◄─────────────────────────  "\1\n"           ready
//	                                                 memfd ← childConfig.Builtin
//	                                                 execve(/proc/self/exe builtinArg <memfd>)
//	EOF on fd 3          ◄─────────────────────────  (execve succeeded)
//	                                                 the builtin stage: read the memfd,
//	builder output       ◄═════════ pty ══════════  run the builtin, exit 0 or 1
//
// Every frame starts with '\1' and ends with '\n', as in Nix, whose child
// writes the same framing to its log pipe; encoding/json never emits a raw
// newline, so a frame is one line. The parent reads fd 3 until EOF and then
// decides: an error frame is a *SetupError; "ready" with no error frame
// means the builder runs; EOF with neither means the child died before it
// could say anything (a crash, a kill), which also becomes a *SetupError,
// carrying the child's wait status. So the parent never hangs on a child
// that dies early: the child's death closes fd 3.
//
// The parent keeps its end open until the EOF. The child relies on that to
// notice a parent that died before the child set its parent-death signal:
// a peek at fd 3 then sees EOF rather than "no data". (When the spawner
// clones the child, "parent" is the Runner here, and the spawner for the
// parent-death signal; see below.)
//
// In Disabled mode the protocol is the same, but the child is started
// without namespaces and skips the steps that need them.
//
// # The spawner
//
// Cloning with CLONE_NEWUSER cannot use vfork (the parent writes the uid
// and gid maps while the child waits), so the kernel copies the page
// tables of the process that clones: the bigger the caller's heap, the
// slower every build would start. So a sandboxed child is cloned by the
// spawner instead: our binary once more, with spawnerArg, started once
// per Runner (lazily, with vfork, since it needs no namespace) and kept,
// with a heap of a few MiB. Nothing else changes: the child, its fds and
// the protocol above are the same, and the Runner still talks to the
// child directly; only the clone and the wait4 move. Runner and spawner
// talk over a SOCK_SEQPACKET socket, one JSON message per packet, fds in
// SCM_RIGHTS:
//
//	Runner                                        spawner (/proc/self/exe spawnerArg)
//	──────                                        ───────────────────────────────────
//	socketpair(SEQPACKET): spawner end → fd 3 (spawnerFD)
//	vfork+execve from a thread that then only
//	waits for it; new session, Pdeathsig
//	SIGKILL, no supplementary groups (as root) ──► Go runtime starts, reads fd 3
//
//	per build, any number at once, told apart by id:
//	spawnRequest{id, uid, gid, hostNetwork}
//	  + SCM_RIGHTS [pty slave, config socket] ───► clone(NEWUSER|…), maps written,
//	                                                execve(/proc/self/exe childArg) with
//	                                                its fds as above; closes its copies
//	                  ◄──────────────────────────  spawnReply{started, id, pid}
//	                                                  + SCM_RIGHTS [pidfd]
//	                  ◄──────────────────────────  or spawnReply{failed, id, failure}
//	the protocol with the child, as above;
//	a kill is pidfd_send_signal(pidfd, SIGKILL)
//	                  ◄──────────────────────────  spawnReply{exited, id, wait status},
//	                                                once wait4 reaped the child
//
//	our end closed (Close, or we died) ──────────► EOF: SIGKILL every child by its
//	                                                pidfd, reap them all, exit 0
//	EOF on our end    ◄──────────────────────────  (the spawner died)
//	every build it had fails: a child not started yet sees EOF on its config
//	socket once Run closed it; a started one is killed by its pidfd, whose
//	polling readable then says that it is gone. A request that could not be
//	sent (EPIPE: the spawner died since the last build) goes to a new one.
//
// The Runner waits for "started" only as long as the build's context
// lasts, so that a spawner that hangs cannot hang a cancelled build: the
// request is then abandoned, and the child, if it comes, killed at once.
// It dies before reading its config, so before becoming the build user.
// Likewise, once the build's context ended and its child was killed, the
// Runner waits for "exited" only briefly (spawnerReportTimeout), and
// then only until the child's pidfd polls readable: a warm child (below)
// starts without the spawner, so a build may run while it hangs.
//
// # The warm child
//
// A Runner keeps one child started ahead of its build (warm_linux.go):
// the same spawnRequest, with a uid pool slot, pty and config socket of
// its own, asked for with no build yet, whose child then waits on fd 3
// like any other. Everything the clone fixes is the same for every build
// that is neither fixed-output nor unsandboxed, which then takes the
// warm child, its slot and its pty, and goes on with the protocol above
// where a cold build would be after the request; the next warm child is
// asked for once the builder runs. A warm child that died, before or
// while it read the configuration, is found by its pidfd or the EOF
// without "ready": the build leaves nothing of it and starts again in a
// cold child. One that no build took within warmIdle is discarded as
// Close discards it: killed (or abandoned, if not started yet), waited
// for, and only then its slot released.
//
// Kills go by pidfd, never by pid, so they cannot hit a reused pid. The
// children's parent-death signal belongs to the spawner's thread that
// cloned them; that thread stays locked to the goroutine that waits for
// its child. The spawner's own belongs to our thread that started it,
// which waits for it, so that a killed storefs leaves no spawner nor
// build behind. Without pidfds (Linux before 5.3) the Runner clones the
// child itself, as it does in Disabled mode.
const (
	// childArg is argv[1] of the sandbox child. It is deliberately not a
	// valid flag or command of any of our binaries.
	childArg = "__storefs-sandbox-child__"

	// configFD is the child's end of the parent's socket: the JSON
	// childConfig comes in on it, the status frames go out on it.
	configFD = 3

	// spawnerArg is argv[1] of the spawner.
	spawnerArg = "__storefs-sandbox-spawner__"

	// spawnerFD is the spawner's end of its socket to the Runner.
	spawnerFD = 3

	// builtinArg is argv[1] of the builtin stage, the sandbox child
	// re-executed to run a builtin builder; argv[2] is the number of the
	// descriptor holding its builtinConfig (see execBuiltin).
	builtinArg = "__storefs-sandbox-builtin__"

	// childFailedExit is the child's exit status after it reported a setup
	// failure (runc uses the same value).
	childFailedExit = 255

	// frameStart starts every status frame.
	frameStart = '\x01'
)

// childConfig is everything the sandbox child needs; it reads nothing else
// (not its environment, not a file). Paths named "host" are host paths,
// resolved before pivot_root; the others are paths inside the sandbox.
type childConfig struct {
	// Sandbox describes the namespaces and the chroot; nil in Disabled
	// mode, where the child runs the builder on the host.
	Sandbox *sandboxConfig `json:"sandbox,omitempty"`

	// Dir is the builder's working directory: "/build" in the sandbox, the
	// host build directory in Disabled mode.
	Dir string `json:"dir"`

	// SetUser makes the child switch to UID and GID before the exec. In a
	// sandbox these are the ids inside the user namespace (1000 and 100);
	// in Disabled mode they are the host ids of the uid pool slot, and the
	// supplementary groups are cleared too (impossible in a user namespace
	// whose setgroups is "deny", where the parent clears them before
	// cloning).
	SetUser bool `json:"setUser"`
	UID     int  `json:"uid"`
	GID     int  `json:"gid"`

	// Linux32 selects the 32-bit personality (i686 on x86_64, armv7l on
	// aarch64), as Nix does for those systems.
	Linux32 bool `json:"linux32,omitempty"`

	// Uname26 adds the UNAME26 personality (impersonate-linux-26).
	Uname26 bool `json:"uname26,omitempty"`

	// Builder is the program to execute, Argv its full argument vector
	// (argv[0] is the builder's base name, as in Nix) and Env its
	// environment as sorted "NAME=value" strings.
	Builder string   `json:"builder"`
	Argv    []string `json:"argv"`
	Env     []string `json:"env"`

	// Builtin is set for a builtin builder: the JSON of its
	// builtinConfig, which the child passes on to the builtin stage
	// unread.
	Builtin json.RawMessage `json:"builtin,omitempty"`
}

// builtinConfig is everything a builtin builder reads.
type builtinConfig struct {
	// Name is the builtin's name: the builder without "builtin:".
	Name string `json:"name"`

	// Env is the derivation's environment (Spec.Env), whose attributes
	// configure the builtin, as in Nix.
	Env map[string]string `json:"env"`

	// Fetch is set for builtin:fetchurl.
	Fetch *fetchConfig `json:"fetch,omitempty"`
}

// fetchConfig is what builtin:fetchurl takes from the host: the fields of
// Spec with the same names (DownloadAttempts defaulted).
type fetchConfig struct {
	Netrc          []byte        `json:"netrc,omitempty"`
	CACerts        []byte        `json:"caCerts,omitempty"`
	ConnectTimeout time.Duration `json:"connectTimeout,omitempty"`
	Attempts       int           `json:"attempts"`
	HashedMirrors  []string      `json:"hashedMirrors,omitempty"`
}

// rootKind is where a sandbox's root directory lives. It is the same for
// every build of a Runner (see Runner.init).
type rootKind string

const (
	// rootTmpfs: a tmpfs that Run's process makes and fills (when we are
	// root), mounted nowhere until the child attaches it in its own mount
	// namespace; it goes when the namespace does. Its files belong to
	// our root, who is nobody in the sandbox, as they would on disk.
	rootTmpfs rootKind = "tmpfs"
	// rootTmpfsChild: a tmpfs that the child makes and fills, when we are
	// not root: we may not make one, and the child may only in its own
	// user namespace, whose root we do not map (a file owned by an
	// unmapped uid cannot be created there), so that its files are the
	// build user's, as on disk in the same case.
	rootTmpfsChild rootKind = "tmpfs-child"
	// rootDisk: a directory that Run makes and fills in Spec.TempDir,
	// and removes afterwards, for kernels without the new mount API
	// (Linux before 5.2) or where it is refused.
	rootDisk rootKind = "disk"
)

// sandboxConfig is the namespace part of childConfig.
type sandboxConfig struct {
	// RootFS is where the sandbox's root comes from (see rootKind):
	// rootTmpfs, a tmpfs whose mount comes with the configuration (in
	// SCM_RIGHTS, see above), filled by the parent; rootTmpfsChild, a
	// tmpfs that the child makes and fills with Skeleton; rootDisk, the
	// directory Root on disk, filled by the parent. A tmpfs is attached
	// over Store in the child's mount namespace (nothing else of the host
	// lies under it, and pivot_root needs the new root at a path), once
	// Store itself was cloned: so the child reaches it at Store.
	RootFS rootKind `json:"rootFS"`

	// Root is the host path of the chroot on disk (rootDisk), else "":
	// every mount point below already exists in it.
	Root string `json:"root,omitempty"`

	// Skeleton is what the child makes on its root tmpfs
	// (rootTmpfsChild).
	Skeleton []skelEntry `json:"skeleton,omitempty"`

	// Store is the host directory bound at StoreDir, where the builder
	// creates its outputs: on disk, in Spec.TempDir, like the outputs'
	// destination. The mount points of the inputs already exist in it.
	Store string `json:"store"`

	// StoreDir is the logical store directory.
	StoreDir string `json:"storeDir"`

	// Binds are bind mounts in mount order (sorted by target, so a parent
	// is mounted before anything below it): the build directory, the
	// inputs, sandbox-paths and, for fixed-output builds, host files of
	// /etc.
	Binds []bindMount `json:"binds"`

	// DevNodes are host device files bind-mounted at the same path inside;
	// empty when sandbox-paths provides /dev itself.
	DevNodes []string `json:"devNodes,omitempty"`

	// DevPts mounts a private devpts instance on /dev/pts (/dev/ptmx is a
	// symlink into it).
	DevPts bool `json:"devPts"`

	// DevShm mounts a private tmpfs on /dev/shm (when the host has one,
	// like Nix).
	DevShm bool `json:"devShm"`

	// PrivateNetwork is true when the child is in a new network namespace
	// and must bring up its loopback interface.
	PrivateNetwork bool `json:"privateNetwork"`
}

// bindMount is one bind mount of childConfig.
type bindMount struct {
	Source   string `json:"source"` // host path
	Target   string `json:"target"` // path inside the sandbox
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// setupFailure is the payload of an error frame.
type setupFailure struct {
	Step  string `json:"step"`            // the runChild step that failed
	Msg   string `json:"msg"`             // the wrapped error's text
	Errno int    `json:"errno,omitempty"` // the underlying errno, if any
}

// readyFrame is the frame the child writes just before execve.
const readyFrame = "\x01\n"

// newSetupFailure describes err at step, keeping its errno.
func newSetupFailure(step string, err error) *setupFailure {
	f := &setupFailure{Step: step, Msg: err.Error()}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		f.Errno = int(errno)
	}
	return f
}

// err returns the error f describes, which unwraps to its errno.
func (f *setupFailure) err() error {
	return &childError{msg: f.Msg, errno: syscall.Errno(f.Errno)}
}

// encodeFailure returns the error frame for err at step.
func encodeFailure(step string, err error) []byte {
	b, _ := json.Marshal(newSetupFailure(step, err)) // cannot fail: plain strings and an int
	out := make([]byte, 0, len(b)+2)
	out = append(out, frameStart)
	out = append(out, b...)
	return append(out, '\n')
}

// parseStatus interprets everything the child wrote on configFD. It
// returns whether the child said it was ready, and the first setup failure
// it reported, if any.
func parseStatus(data []byte) (ready bool, failure *setupFailure, err error) {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 || data[0] != frameStart {
			return ready, nil, fmt.Errorf("malformed status from sandbox child: %q", data)
		}
		frame := data[1:i]
		data = data[i+1:]
		if len(frame) == 0 {
			ready = true
			continue
		}
		var f setupFailure
		if err := json.Unmarshal(frame, &f); err != nil {
			return ready, nil, fmt.Errorf("malformed status from sandbox child: %q: %w", frame, err)
		}
		return ready, &f, nil
	}
	return ready, nil, nil
}

// spawnRequest asks the spawner for one sandbox child. Its SCM_RIGHTS
// carry the pty slave (the child's stdout and stderr) and the child's end
// of the config socket, in that order.
type spawnRequest struct {
	// ID names the child in the replies.
	ID uint64 `json:"id"`
	// UID and GID are the host ids mapped to the build user and group.
	UID int `json:"uid"`
	GID int `json:"gid"`
	// HostNetwork leaves out the network namespace (fixed-output builds).
	HostNetwork bool `json:"hostNetwork,omitempty"`
}

// Kinds of spawnReply.
const (
	// spawnStarted: the child was cloned and executed; Pid is its pid
	// and the SCM_RIGHTS carry its pidfd.
	spawnStarted = "started"
	// spawnFailed: clone or execve failed (Failure says why); nothing
	// runs.
	spawnFailed = "failed"
	// spawnExited: the child was reaped; Status is its wait status.
	spawnExited = "exited"
)

// spawnReply is what the spawner says about a child.
type spawnReply struct {
	Kind    string        `json:"kind"`
	ID      uint64        `json:"id"`
	Pid     int           `json:"pid,omitempty"`
	Status  uint32        `json:"status,omitempty"`  // a syscall.WaitStatus
	Failure *setupFailure `json:"failure,omitempty"` // spawnFailed, or wait4's error
}
