//go:build linux && !amd64 && !arm64

package sandbox

import "golang.org/x/sys/unix"

// seccompFilter is empty where internal/seccompgen has no target: New then
// fails, as Nix does without seccomp support.
var seccompFilter []unix.SockFilter
