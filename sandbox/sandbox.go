package sandbox

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"path"
	"strings"
	"syscall"
	"time"
)

// Defaults of Options, as in nix.conf.
const (
	// DefaultStartID is nix.conf's default start-id: the first uid and gid
	// of the range that builds run as.
	DefaultStartID = 872415232
	// DefaultIDCount is nix.conf's default id-count: the size of that
	// range.
	DefaultIDCount = 8388608
	// idsPerSlot is how many ids of the range one build owns, as with
	// Nix's auto-allocate-uids: a slot could give a build a whole uid
	// range; we map only the first id.
	idsPerSlot = 65536
)

// The ids the builder has inside the sandbox, as in Nix 2.8: fixed, so that
// builds are reproducible whatever host uid they get. 100 is the
// traditional gid of nixbld.
const (
	sandboxUID = 1000
	sandboxGID = 100
)

// sandboxBuildDir is the build directory as the builder sees it (nix.conf's
// sandbox-build-dir).
const sandboxBuildDir = "/build"

// DefaultUIDLockDir holds the uid pool's lock files. It is one per
// machine, not per store, because the pool's uids are the machine's: two
// stores building at once must not hand out the same uid either.
const DefaultUIDLockDir = "/run/storefs/userpool"

// Options configures a Runner. A nil *Options means all defaults.
type Options struct {
	// UIDLockDir holds the uid pool's lock files, one flock'ed file per
	// slot, so that two builds never share a uid, even in different
	// processes. Created if missing. Zero means DefaultUIDLockDir.
	UIDLockDir string

	// StartID is nix.conf's start-id: the first host uid and gid of the
	// pool. Zero means DefaultStartID.
	StartID uint32

	// IDCount is nix.conf's id-count: the size of the id range. Slot k uses
	// uid = gid = StartID + k*65536, so the range holds IDCount/65536
	// slots. Zero means DefaultIDCount (128 slots).
	IDCount uint32

	// Disabled is nix.conf's `sandbox = false`: the builder runs on the
	// host, without namespaces or chroot, in the real build directory,
	// creating its outputs at their real paths. The caller allows this
	// only when its logical store directory is the real one. When we are
	// root the builder still runs as the uid of a pool slot, like Nix's
	// build users, and still under the seccomp filter: Spec.StoreDir must
	// then be writable by that uid (mode 1777, say) and Spec.TempDir
	// reachable by it. The zero value sandboxes.
	Disabled bool

	// KVM is whether the kvm system feature is on (nix.conf's
	// system-features): /dev/kvm is then bound into the sandbox if the
	// host has it, as Nix 2.8 does. The zero value leaves it out.
	KVM bool

	// ImpersonateLinux26 is nix.conf's impersonate-linux-26: builders for
	// x86_64-linux and i686-linux see uname report a 2.6 kernel (the
	// UNAME26 personality), for builds that depend on the kernel's
	// version.
	ImpersonateLinux26 bool

	// Logger receives per-build Debug messages. Nil discards them.
	Logger *slog.Logger
}

// BindPath is one entry of nix.conf's sandbox-paths, "target=source", or
// just "path" for both; a trailing "?" makes it optional.
type BindPath struct {
	// Target is where the path appears inside the sandbox.
	Target string
	// Source is the host path bound there.
	Source string
	// Optional entries are skipped when Source does not exist; a missing
	// required one is a *SetupError.
	Optional bool
}

// Spec describes one build. Run does not modify it.
type Spec struct {
	// StoreDir is the logical store directory the builder sees, for
	// example /nix/store.
	StoreDir string

	// TempDir is an existing host directory, on the same filesystem as
	// the backing store and OutputDir, in which Run makes the build
	// directory and the sandbox's store directory (where the builder
	// creates its outputs), and the rest of the chroot only on kernels
	// without the new mount API (see "The chroot" in the package doc).
	// Run removes what it made there.
	TempDir string

	// Name is the derivation's name, used to name the temporary
	// directories.
	Name string

	// Builder is the program to run and Args its arguments (without
	// argv[0], which is the builder's base name, as in Nix).
	Builder string
	Args    []string

	// Env is the derivation's environment, after the caller processed
	// passAsFile and structured attributes. Run adds Nix's fixed variables
	// (see builderEnv).
	Env map[string]string

	// Files are written into the build directory before the builder
	// starts (".attrs.json", ".attrs.sh", ".attr-<hash>",
	// exportReferencesGraph files), mode 0644 and owned by the build user,
	// as Nix writes them. Keys are plain file names.
	Files map[string][]byte

	// Inputs maps the logical store path of each path of the input closure
	// to the host path holding its contents (in the backing store). Each is
	// bind-mounted read-only at its logical path; a symlink is recreated
	// instead.
	Inputs map[string]string

	// Outputs are the logical output paths the builder may create.
	Outputs []string

	// OutputDir receives the outputs the builder created: after it exits,
	// each one is renamed to OutputDir/<base name>, which must not exist.
	// Anything else the builder left in the store directory is discarded.
	OutputDir string

	// FixedOutput marks a fixed-output derivation: it shares the host's
	// network, gets the host's /etc/resolv.conf, /etc/services and
	// /etc/hosts, NIX_OUTPUT_CHECKED=1 and ImpureEnv.
	FixedOutput bool

	// ImpureEnv holds the values of the derivation's impureEnvVars that the
	// caller took from its own environment. Used only when FixedOutput.
	ImpureEnv map[string]string

	// SandboxPaths are nix.conf's sandbox-paths (and extra-sandbox-paths).
	SandboxPaths []BindPath

	// Cores is NIX_BUILD_CORES (nix.conf's cores), passed as is.
	Cores int

	// System is the derivation's system. "i686-linux" (on x86_64) and
	// "armv7l-linux"/"armv6l-linux" select the 32-bit personality, as in
	// Nix; empty or anything else changes nothing.
	System string

	// KeepBuildDir keeps the build directory after Run returns, and
	// Result.BuildDir names it; the caller removes it (after a success)
	// or keeps it (keep-failed). Otherwise Run removes it.
	KeepBuildDir bool

	// The fields below configure builtin:fetchurl (see builtin_linux.go);
	// Run ignores them for any other builder. The chroot holds none of
	// the host's configuration, so the caller reads what the download
	// needs and passes it here.

	// Netrc is the contents of the file named by nix.conf's netrc-file:
	// credentials for the hosts it names. Nil means none.
	Netrc []byte

	// CACerts is a PEM bundle of the certificate authorities that HTTPS
	// servers are verified against (nix.conf's ssl-cert-file, for
	// example /etc/ssl/certs/ca-certificates.crt). Nil means the
	// system's, which exist only in Disabled mode: in a sandbox every
	// HTTPS download then fails verification.
	CACerts []byte

	// ConnectTimeout is nix.conf's connect-timeout: how long connecting
	// to a server may take. Zero means no limit of ours.
	ConnectTimeout time.Duration

	// DownloadAttempts is nix.conf's download-attempts: how often a URL
	// is tried when it fails transiently (a network error, HTTP 5xx).
	// Zero means 5, Nix's default.
	DownloadAttempts int

	// HashedMirrors is nix.conf's hashed-mirrors: for a flat-hashed
	// download, each mirror is tried first as
	// <mirror>/<algo>/<base16 hash>. Nil means none.
	HashedMirrors []string
}

// Result is how a build ended.
type Result struct {
	// ExitCode is the builder's exit status, or -1 if a signal ended it.
	ExitCode int
	// Signal is the signal that ended the builder, or 0.
	Signal syscall.Signal
	// BuildDir is the host path of the build directory when
	// Spec.KeepBuildDir is set, else "".
	BuildDir string
	// UID and GID are the host ids the builder ran as.
	UID, GID int
}

// Runner runs builders. It is safe for concurrent use: each Run takes its
// own uid pool slot. Close stops the helper process it may have started.
type Runner struct {
	opts   Options
	logger *slog.Logger
	pool   *uidPool // nil when not root: builders run as the calling user
	uid    int      // our own uid and gid
	gid    int

	// spawner clones the sandboxed children when useSpawner (see
	// protocol.go); it also records whether Close was called.
	spawner    *spawnerRef
	useSpawner bool

	// warm keeps a sandbox child started ahead of its build (see
	// warm_linux.go); nil without a spawner.
	warm *warmPool

	// stageBinds are what the builtin stage needs in a chroot, or
	// stageErr why they are unknown (see builtinStageBinds).
	stageBinds []bindMount
	stageErr   error

	// rootKind is where the sandboxes' roots live.
	rootKind rootKind
}

// New returns a Runner. It fails with ErrNoNamespaces (wrapped) when the
// kernel cannot give builds their namespaces and opts.Disabled is not set.
func New(opts *Options) (*Runner, error) {
	if opts == nil {
		opts = &Options{}
	}
	o := *opts
	if o.UIDLockDir == "" {
		o.UIDLockDir = DefaultUIDLockDir
	}
	if o.StartID == 0 {
		o.StartID = DefaultStartID
	}
	if o.IDCount == 0 {
		o.IDCount = DefaultIDCount
	}
	if o.IDCount < idsPerSlot {
		return nil, fmt.Errorf("sandbox: id-count %d is less than one slot of %d ids", o.IDCount, idsPerSlot)
	}
	if uint64(o.StartID)+uint64(o.IDCount) > math.MaxUint32 {
		return nil, fmt.Errorf("sandbox: start-id %d + id-count %d exceeds the uid range", o.StartID, o.IDCount)
	}
	r := &Runner{opts: o, logger: o.Logger}
	if r.logger == nil {
		r.logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := r.init(); err != nil {
		return nil, err
	}
	return r, nil
}

// validate checks a Spec before Run touches anything.
func (s *Spec) validate() error {
	if !path.IsAbs(s.StoreDir) || path.Clean(s.StoreDir) != s.StoreDir || s.StoreDir == "/" {
		return fmt.Errorf("invalid store directory %q", s.StoreDir)
	}
	if !path.IsAbs(s.TempDir) {
		return fmt.Errorf("temporary directory %q is not absolute", s.TempDir)
	}
	if !path.IsAbs(s.OutputDir) {
		return fmt.Errorf("output directory %q is not absolute", s.OutputDir)
	}
	if strings.ContainsAny(s.Name, "/\x00") {
		return fmt.Errorf("invalid derivation name %q", s.Name)
	}
	if s.Builder == "" || strings.ContainsRune(s.Builder, 0) {
		return fmt.Errorf("invalid builder %q", s.Builder)
	}
	for _, a := range s.Args {
		if strings.ContainsRune(a, 0) {
			return fmt.Errorf("builder argument %q contains NUL", a)
		}
	}
	for _, m := range []map[string]string{s.Env, s.ImpureEnv} {
		for k, v := range m {
			if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
				return fmt.Errorf("invalid environment variable %q", k)
			}
		}
	}
	for name := range s.Files {
		if !validName(name) {
			return fmt.Errorf("invalid build directory file name %q", name)
		}
	}
	for logical, host := range s.Inputs {
		if !s.isStorePath(logical) {
			return fmt.Errorf("input %q is not a path in %s", logical, s.StoreDir)
		}
		if !path.IsAbs(host) {
			return fmt.Errorf("host path %q of input %s is not absolute", host, logical)
		}
	}
	for _, out := range s.Outputs {
		if !s.isStorePath(out) {
			return fmt.Errorf("output %q is not a path in %s", out, s.StoreDir)
		}
	}
	for _, b := range s.SandboxPaths {
		if !path.IsAbs(b.Target) || path.Clean(b.Target) == "/" {
			return fmt.Errorf("invalid sandbox path target %q", b.Target)
		}
		if !path.IsAbs(b.Source) {
			return fmt.Errorf("sandbox path source %q is not absolute", b.Source)
		}
	}
	if s.Cores < 0 {
		return fmt.Errorf("negative cores %d", s.Cores)
	}
	if s.ConnectTimeout < 0 {
		return fmt.Errorf("negative connect timeout %v", s.ConnectTimeout)
	}
	if s.DownloadAttempts < 0 {
		return fmt.Errorf("negative download attempts %d", s.DownloadAttempts)
	}
	return nil
}

// isStorePath reports whether p is directly in the store directory.
func (s *Spec) isStorePath(p string) bool {
	dir, base := path.Split(p)
	return dir == s.StoreDir+"/" && validName(base)
}

// validName reports whether name is a plain file name.
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}
