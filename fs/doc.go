// Package fs serves the store directory through FUSE (go-fuse): valid
// paths come from the backing directory, and a lookup of a store path that
// is not valid yet realises it while the lookup blocks.
//
// # The lookup decision
//
// Resolver is the protocol-neutral core: given a name in the store root it
// answers valid, unknown, failed or interrupted, asking the worker
// (Realiser) to realise paths it knows. The go-fuse root node only adapts
// its answers; errno is the one place errors become ENOENT (unknown or
// impossible names), EINTR (the caller was interrupted) or EIO (the build
// failed; the daemon's log and `storefs log` say why). Failures are
// remembered briefly, so that a loop of lookups does not rebuild forever.
//
// # Kernel caching
//
// Valid paths are immutable: entries and attributes are cached for an hour,
// files keep their page cache (and are read through FUSE passthrough where
// the kernel has it), directories are opened with FOPEN_CACHE_DIR. Names
// that do not exist get a one-second negative entry; when such a path
// becomes valid by any route, Server.PathValid invalidates it
// (NotifyEntry), from a separate goroutine: the kernel's invalidation can
// wait for a lookup in progress, which may itself wait for the goal that
// made the path valid.
//
// # Interrupts and deadlocks
//
// A lookup's context is cancelled when the kernel interrupts the request
// (the calling process got a signal): the lookup returns EINTR at once,
// and the goal goes on for other waiters (and, by default, even with none,
// so the next lookup finds the path built). Builders and substituters
// never read through the mount: the sandbox bind-mounts inputs from the
// backing directory, so a build cannot wait on its own mount. The storefs
// process itself must not access the mount either (go-fuse serves it from
// the same process); tests reach it through subprocesses.
package fs
