// Package sandbox runs one builder isolated the way Nix 2.8 does on Linux,
// so that a build sees the same world here as under Nix: the same ids,
// names, files, devices, mounts, environment and syscall filter.
//
// It knows nothing of derivations or the store database: the caller
// (package realise) computes the environment, the input closure and the
// outputs, passes them as plain strings in a Spec, and checks and registers
// what the builder produced. Package sandbox imports no other storefs
// package but store/nar (builtin:fetchurl unpacks NARs).
//
// # Basics
//
// New returns a Runner from Options (nix.conf's start-id, id-count,
// sandbox, system-features). Runner.Run takes a Spec, runs its builder,
// streams the builder's output (one pty, raw mode) to an io.Writer, moves
// the outputs the builder made to Spec.OutputDir and returns a Result: the
// exit status and the host ids the build ran as. A builder that fails is a
// Result, not an error; an environment that could not be set up is a
// *SetupError.
//
// Run re-executes our own binary (/proc/self/exe) as the sandbox child, so
// RunChildIfRequested must be the first statement of main, and of TestMain
// in packages whose tests run builds. The child gets new user, mount, pid,
// ipc, uts and (except for fixed-output builds) network namespaces, enters
// the chroot the parent prepared, becomes the build user (uid 1000, gid 100
// inside; a uid pool slot outside), loads the seccomp filter and executes
// the builder as pid 1. protocol.go draws how parent and child talk.
//
// # The chroot
//
// The builder sees the tree Nix 2.8 gives it, but most of it is not on
// disk. The root, with /etc, /tmp, /dev and every mount point outside the
// store directory, is a tmpfs of the build's own, made and filled by Run
// (as root; see rootKind for the other cases) while the child starts, and
// attached by the child in its mount namespace: making and removing those
// few dozen files on disk cost more than the rest of a trivial build.
// Only what must be on disk is: the build directory, and the store
// directory, a directory in Spec.TempDir bound at Spec.StoreDir, where
// the builder creates its outputs, so that Run can rename them to
// Spec.OutputDir, and where the inputs' mount points are. On a kernel
// without the new mount API (Linux before 5.2) the root is a directory
// in Spec.TempDir, as in Nix.
//
// /tmp, the one writable directory of the root, lives on its tmpfs, and
// so in memory (swappable, and charged to the builder's memory cgroup)
// where Nix's is on disk; the tmpfs holds at most half the RAM, as the
// /dev/shm of nix.conf's default sandbox-shm-size does. A builder is
// given $TMPDIR, the build directory, for its big files; a tool that
// writes to /tmp regardless gets ENOSPC sooner than on a big disk. /tmp
// cannot be on disk without being a mount point, which Nix's is not (the
// sandbox-check fixture pins the mount table).
//
// A sandboxed child is not cloned by Run's process but by the Runner's
// spawner: our binary once more, started by the first sandboxed build and
// kept, so that starting a build costs the same whatever the size of the
// caller's heap (a clone into a new user namespace copies the page tables
// of the process that clones). Close stops it: whoever made the Runner
// closes it once its builds are over (realise's caller, cmd/storefs).
//
// The Runner also keeps one sandbox child started ahead of its next
// build, the warm child: cloned by the spawner with its namespaces, its
// uid pool slot and pty, executed and waiting for its configuration.
// A build that is neither fixed-output (whose child has no network
// namespace of its own) nor unsandboxed takes it, and so skips the
// clone, the namespaces and our binary's start, most of what starting a
// no-op build costs; once its builder runs, the next warm child is asked
// for. A warm child found dead, or that dies before it runs the builder,
// is replaced by a cold start: the build does not fail for it. Until it
// enters a build's root, its mount namespace holds a copy of every host
// mount, which keeps a filesystem unmounted lazily meanwhile alive (such
// as our own FUSE mount at shutdown): so one that no build took within a
// second goes. Close kills it and frees its slot.
//
// # Builtin builders
//
// A builder named "builtin:fetchurl" or "builtin:buildenv" is not a
// program but code of ours, run in the sandbox, as the build user, where
// the builder would have been executed, as in Nix 2.8: the child
// executes our binary once more as the builtin stage (see
// builtin_linux.go), whose exit status is the builder's. fetchurl
// downloads over HTTP(S) or from a file:// path in the sandbox; it gets
// what it needs from the host (netrc credentials, CA certificates,
// timeouts, attempts, hashed mirrors) through Spec, since the chroot has
// none of it. A fixed-output derivation has the host's network. buildenv
// makes a user environment of symlinks, as nix-env does.
//
// # Invariants
//
//   - Isolation: the builder sees only its inputs (read-only), its build
//     directory at /build, /tmp, a minimal /dev, its own /proc and the
//     sandbox-paths; no host network unless fixed-output; no capabilities,
//     no_new_privs, and a seccomp filter against setuid/setgid files and
//     extended attributes.
//   - One build per uid: a uid pool slot is an flock on a file in
//     Options.UIDLockDir, so concurrent builds, also in different
//     processes, never share a uid.
//   - Nothing is left: when Run returns, no process of the build runs (they
//     all live in the builder's pid namespace, which dies with it), nothing
//     is mounted (the mounts exist only in the child's mount namespace;
//     the root tmpfs goes with it) and nothing Run made is on disk, except
//     the moved outputs and a build directory kept on request.
//   - Nothing outlives us: the spawner and every build die with our
//     process (parent-death signals), also when it is killed; the warm
//     child, which has not set its own, sees EOF on its config socket
//     and exits.
//
// # Concurrency
//
// A Runner is safe for concurrent use; each Run holds its own uid slot.
// Run blocks until the build ends; cancelling its context kills the build.
// The writer passed to Run is called from one goroutine at a time. Close
// may be called concurrently with Run: it kills the builds still running,
// and Run fails afterwards. A spawner that dies fails the builds it was
// running, cleanly; the next build starts another one.
//
// # Caveats
//
// Disabled mode (nix.conf's `sandbox = false`) runs the builder on the
// host, without any of the isolation above but the build user and the
// seccomp filter, as Nix does.
//
// The sandbox child must start fast, since it starts once per build: the
// seccomp program is generated ahead of time (internal/seccompgen) rather
// than linking libseccomp, so that this package adds no cgo. A binary that
// links cgo for other reasons (package net's resolver, which
// builtin:fetchurl brings, or os/user) makes every build pay for the
// dynamic loader; build storefs with CGO_ENABLED=0, or the netgo and
// osusergo tags. Every package linked into the binary runs its init in
// every child, whether or not the build is a builtin: what fetchurl
// brings (net/http, crypto/tls, xz) costs about half a millisecond, which
// cmd/storefs pays anyway for its binary caches.
package sandbox
