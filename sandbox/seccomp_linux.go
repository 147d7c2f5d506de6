package sandbox

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The builder's seccomp filter is Nix 2.8's (see setupSeccomp in Nix's
// build code), plus the syscalls added to Linux since:
//
//   - chmod, fchmod, fchmodat and fchmodat2 fail with EPERM when the mode
//     has S_ISUID or S_ISGID: builders cannot make setuid or setgid files,
//     even in their own outputs;
//   - setxattr, lsetxattr and fsetxattr (and setxattrat, where libseccomp
//     knows it) fail with ENOTSUP: a NAR cannot carry extended attributes
//     or ACLs, so they must not leak into outputs;
//   - io_uring_setup fails with ENOSYS, as in Lix: io_uring operations are
//     not seen by seccomp, and programs fall back to plain syscalls;
//   - on x86_64 the x86 and x32 ABIs are filtered too (on aarch64, arm),
//     so 32-bit programs run, filtered, instead of being killed.
//
// The BPF program (seccompFilter) is generated with libseccomp ahead of
// time, by internal/seccompgen, which also writes libseccomp's readable
// form of it next to it. Linking libseccomp instead would put cgo and the
// dynamic loader into every start of the sandbox child, which costs about
// as much as the rest of a no-op build.
//
//go:generate go run ./internal/seccompgen

// Arguments of seccomp(2) (linux/seccomp.h).
const (
	seccompSetModeFilter   = 1
	seccompFilterFlagTsync = 1
)

// loadSeccomp is step 7: no-new-privs, then the filter. no_new_privs
// keeps the builder from gaining privileges through setuid binaries or
// file capabilities; it also lets an unprivileged process install a
// filter. TSYNC puts the filter on every thread of the process (the
// Go runtime has several), not just ours, or fails.
func loadSeccomp() error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return os.NewSyscallError("prctl PR_SET_NO_NEW_PRIVS", err)
	}
	if len(seccompFilter) == 0 {
		return fmt.Errorf("no seccomp filter for this architecture")
	}
	prog := unix.SockFprog{Len: uint16(len(seccompFilter)), Filter: &seccompFilter[0]}
	tid, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, seccompSetModeFilter, seccompFilterFlagTsync, uintptr(unsafe.Pointer(&prog)))
	if errno != 0 {
		return os.NewSyscallError("seccomp", errno)
	}
	if tid != 0 {
		return fmt.Errorf("seccomp: thread %d could not be synchronised", tid)
	}
	return nil
}
