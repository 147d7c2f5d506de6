package sandbox

import (
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// This file runs the builtin builders: a derivation whose builder is
// "builtin:<name>" is built by code of ours, run where the builder would
// have been executed, after the whole sandbox is set up, as in Nix's
// runChild. Nix 2.8 has builtin:fetchurl (builtin_fetchurl.go) and
// builtin:buildenv (builtin_buildenv.go).
//
// The builtin does not run in the sandbox child itself but in the builtin
// stage: the child, at step 8, executes our binary once more (still pid 1
// of the build's namespaces, in the chroot), with builtinArg. The child
// dropped to the build user with raw syscalls on its own thread only (see
// dropToBuildUser), which is enough before an exec; a builtin that ran in
// the child would start goroutines (net/http does), which the Go runtime
// runs on other threads that still have the child's ids and capabilities.
// syscall.AllThreadsSyscall could change every thread, but not in a binary
// that links cgo. The exec leaves one thread, with the build user's ids, no
// capabilities, no_new_privs and the seccomp filter; the builtin stage may
// then start goroutines, the one exception to the child's rule. The extra
// exec costs a millisecond or two, and only builtins pay it.
//
// A binary that links cgo (package net does, unless CGO_ENABLED=0) is
// dynamically linked: executing it needs its ELF interpreter and shared
// libraries, which are then bound read-only into the chroot of builtin
// builds, the closure of their "builder" (see builtinStageBinds).

// builtinPrefix starts the builder of a builtin builder.
const builtinPrefix = "builtin:"

// isBuiltin reports whether builder names a builtin builder.
func isBuiltin(builder string) bool { return strings.HasPrefix(builder, builtinPrefix) }

// newBuiltinConfig returns childConfig.Builtin for spec. Only fetchurl
// gets the host's download settings (the CA bundle is large, the netrc
// secret).
func newBuiltinConfig(spec *Spec) json.RawMessage {
	bc := builtinConfig{Name: strings.TrimPrefix(spec.Builder, builtinPrefix), Env: spec.Env}
	if bc.Name == "fetchurl" {
		bc.Fetch = &fetchConfig{
			Netrc:          spec.Netrc,
			CACerts:        spec.CACerts,
			ConnectTimeout: spec.ConnectTimeout,
			Attempts:       spec.DownloadAttempts,
			HashedMirrors:  spec.HashedMirrors,
		}
		if bc.Fetch.Attempts == 0 {
			bc.Fetch.Attempts = defaultDownloadAttempts
		}
	}
	b, err := json.Marshal(&bc)
	if err != nil {
		panic("sandbox: invariant broken: builtinConfig (strings and bytes) does not marshal: " + err.Error())
	}
	return b
}

// proxyVars are the variables of the builder's environment that the
// builtin stage's environment gets: net/http reads its proxies there, as
// curl in Nix's child does (for fixed-output derivations the
// impureEnvVars hold them). Nothing else: a derivation's GODEBUG or
// GOMAXPROCS must not reach our runtime.
var proxyVars = [...]string{"http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"}

// execBuiltin is step 8 for a builtin builder: it executes the builtin
// stage, passing it cfg.Builtin in a memfd. It returns only on failure.
func execBuiltin(cfg *childConfig) error {
	if err := readyToExec(); err != nil {
		return err
	}
	// Made after readyToExec, so that it stays open across the exec.
	fd, err := unix.MemfdCreate("storefs-builtin", 0)
	if err != nil {
		return os.NewSyscallError("memfd_create", err)
	}
	if err := writeAll(fd, cfg.Builtin); err != nil {
		return err
	}
	if _, err := unix.Seek(fd, 0, io.SeekStart); err != nil {
		return os.NewSyscallError("lseek", err)
	}
	// One P is plenty. A race-enabled binary (the tests) would wait a
	// second before exiting 0; other binaries ignore GORACE.
	env := []string{"GOMAXPROCS=1", "GORACE=atexit_sleep_ms=0"}
	for _, kv := range cfg.Env {
		for _, name := range proxyVars {
			if strings.HasPrefix(kv, name+"=") {
				env = append(env, kv)
			}
		}
	}
	// /proc/self/exe is our binary even in the chroot: the link leads
	// to the file, wherever it is.
	argv := []string{"storefs-builtin", builtinArg, strconv.Itoa(fd)}
	err = unix.Exec("/proc/self/exe", argv, env)
	return &os.PathError{Op: "execve", Path: "/proc/self/exe", Err: err}
}

// builtinMain is the builtin stage: it reads the builtinConfig from the
// descriptor named by fdArg and runs the builtin. As in Nix, any failure
// is written to stderr (the build log) and the exit status is 1.
func builtinMain(fdArg string) (code int) {
	defer func() {
		if v := recover(); v != nil {
			fmt.Fprintf(os.Stderr, "error: builtin builder: panic: %v\n%s", v, debug.Stack())
			code = 1
		}
	}()
	if err := runBuiltinStage(fdArg, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		return 1
	}
	return 0
}

func runBuiltinStage(fdArg string, log io.Writer) error {
	fd, err := strconv.Atoi(fdArg)
	if err != nil {
		return fmt.Errorf("builtin builder: bad descriptor %q", fdArg)
	}
	var bc builtinConfig
	err = json.NewDecoder(fdReader(fd)).Decode(&bc)
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("builtin builder: reading its configuration: %w", err)
	}
	return runBuiltin(&bc, log)
}

// runBuiltin runs the builtin bc names; log is the build log, for
// warnings.
func runBuiltin(bc *builtinConfig, log io.Writer) error {
	switch bc.Name {
	case "fetchurl":
		return fetchurl(bc.Env, bc.Fetch, log)
	case "buildenv":
		return buildenv(bc.Env, log)
	}
	return fmt.Errorf("unsupported builtin builder '%s'", bc.Name)
}

// attr returns the derivation attribute name, which a builtin needs.
func attr(env map[string]string, name string) (string, error) {
	v, ok := env[name]
	if !ok {
		return "", fmt.Errorf("attribute '%s' missing", name)
	}
	return v, nil
}

// builtinStageBinds returns the read-only binds that executing our own
// binary in a chroot needs: none for a static binary; for a dynamic one
// its ELF interpreter, at the path the binary names (the kernel opens it
// in the chroot), and the shared libraries this process loaded, at their
// paths, which are among the dynamic loader's default directories
// (without /etc/ld.so.cache, it looks there).
func builtinStageBinds() ([]bindMount, error) {
	exe, err := elf.Open("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("reading our own executable: %w", err)
	}
	defer exe.Close()
	var interp string
	for _, p := range exe.Progs {
		if p.Type == elf.PT_INTERP {
			b, err := io.ReadAll(p.Open())
			if err != nil {
				return nil, fmt.Errorf("reading our own executable's interpreter: %w", err)
			}
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	if interp == "" {
		return nil, nil
	}
	src, err := filepath.EvalSymlinks(interp)
	if err != nil {
		return nil, fmt.Errorf("our own executable's interpreter: %w", err)
	}
	binds := []bindMount{{Source: src, Target: interp, ReadOnly: true}}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{interp: true}
	for _, line := range strings.Split(string(maps), "\n") {
		// address perms offset dev inode path; a path with spaces
		// would have more fields: no library has one.
		f := strings.Fields(line)
		if len(f) != 6 || !strings.HasPrefix(f[5], "/") || seen[f[5]] {
			continue
		}
		if base := path.Base(f[5]); strings.HasSuffix(base, ".so") || strings.Contains(base, ".so.") {
			seen[f[5]] = true
			binds = append(binds, bindMount{Source: f[5], Target: f[5], ReadOnly: true})
		}
	}
	return binds, nil
}
