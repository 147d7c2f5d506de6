package realise

import (
	"log/slog"
	"runtime"
	"time"

	"github.com/storefs/storefs/sandbox"
	"github.com/storefs/storefs/store/cache"
)

// Options configure a Worker. A nil *Options means all defaults. Field
// comments give the nix.conf setting each one comes from.
type Options struct {
	// MaxJobs is max-jobs: how many builds run at once. Zero means 1.
	MaxJobs int
	// Cores is cores: NIX_BUILD_CORES for builders. Zero means the number
	// of CPUs.
	Cores int
	// MaxSilentTime is max-silent-time: a builder that prints nothing for
	// this long is killed. Zero means no limit.
	MaxSilentTime time.Duration
	// Timeout is timeout: a build that runs longer is killed. Zero means
	// no limit.
	Timeout time.Duration
	// MaxLogSize is max-build-log-size in bytes: a builder that writes
	// more is killed. Zero means no limit.
	MaxLogSize int64
	// LogLines is log-lines: how many lines of a failed build's log its
	// error shows. Zero means 10; negative means none.
	LogLines int
	// LogDir is where build logs are kept (compressed), one per
	// derivation. Empty means logs are not kept.
	LogDir string
	// System is system: the platform this machine builds for. Empty
	// means x86_64-linux.
	System string
	// ExtraPlatforms is extra-platforms: more platforms it can build for.
	ExtraPlatforms []string
	// SystemFeatures is system-features: what requiredSystemFeatures a
	// derivation may ask for. Nil means none.
	SystemFeatures []string
	// SandboxPaths is sandbox-paths.
	SandboxPaths []sandbox.BindPath
	// Sandbox is sandbox: false runs builders unsandboxed (allowed only
	// when the store directory is the real backing directory). The zero
	// value is false, so callers set it; New's nil Options mean true.
	Sandbox bool
	// PostBuildHook is post-build-hook: a program run after each
	// successful build with DRV_PATH and OUT_PATHS set. Empty means none.
	PostBuildHook string
	// KeepFailed is keep-failed: keep the build directory of a failed
	// build and say where (never a builtin builder's, as in Nix).
	KeepFailed bool
	// DiffHook is diff-hook, run (when RunDiffHook is set) on a --check
	// mismatch with the valid output, the new one (kept as <path>.check),
	// the derivation and the build directory. Empty means none.
	DiffHook string
	// RunDiffHook is run-diff-hook.
	RunDiffHook bool
	// PreBuildHook is pre-build-hook: run with the derivation's path
	// before each build; it may answer "extra-sandbox-paths" and a list
	// of paths (target=source), ended by an empty line, to add to that
	// build's sandbox. Empty means none.
	PreBuildHook string
	// Netrc is the contents of the file named by netrc-file, the
	// credentials builtin:fetchurl uses. Nil means none.
	Netrc []byte
	// CACerts is the contents of ssl-cert-file, the PEM bundle of
	// certificate authorities builtin:fetchurl verifies HTTPS servers
	// against. Nil means none: HTTPS downloads in the sandbox fail.
	CACerts []byte
	// ConnectTimeout is connect-timeout for builtin:fetchurl. Zero means
	// no limit.
	ConnectTimeout time.Duration
	// DownloadAttempts is download-attempts: how often builtin:fetchurl
	// tries a URL that fails transiently. Zero means 5.
	DownloadAttempts int
	// HashedMirrors is hashed-mirrors: where builtin:fetchurl looks for
	// flat-hashed files by hash first. Nil means none.
	HashedMirrors []string
	// CancelOrphans cancels a goal (killing its builder) as soon as no one
	// waits for it any more. The CLI sets it, so that Ctrl-C or a failure
	// without keep-going stops everything; the mount leaves it off
	// (cancel-orphaned-builds), so an interrupted lookup's build still
	// finishes for the next lookup.
	CancelOrphans bool
	// Substituters are the binary caches to substitute from
	// (substituters), in the order to try them (by priority). Nil means
	// build everything.
	Substituters []cache.Cache
	// Fallback is fallback: build a derivation whose outputs a
	// substituter has but failed to deliver.
	Fallback bool
	// MaxSubstitutionJobs is max-substitution-jobs: downloads at once,
	// apart from build slots. Zero means 16.
	MaxSubstitutionJobs int
	// MinFree is min-free: before a build, when the backing store's
	// filesystem has less free space than this, garbage is collected
	// until MaxFree bytes are free. Zero means never.
	MinFree uint64
	// MaxFree is max-free (see MinFree). Zero means collect all garbage.
	MaxFree uint64
	// KeepOutputs and KeepDerivations are keep-outputs and
	// keep-derivations, for those collections.
	KeepOutputs, KeepDerivations bool
	// Environ is the environment (NAME=value) that hooks run with and
	// that fixed-output builds take their impureEnvVars from; library code
	// reads no environment of its own. Nil means empty.
	Environ []string
	// Logger receives goal-level messages. Nil discards them.
	Logger *slog.Logger
}

func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	} else {
		r.Sandbox = true
	}
	if r.MaxJobs <= 0 {
		r.MaxJobs = 1
	}
	if r.Cores <= 0 {
		r.Cores = runtime.NumCPU()
	}
	if r.MaxSubstitutionJobs <= 0 {
		r.MaxSubstitutionJobs = 16
	}
	if r.LogLines == 0 {
		r.LogLines = 10
	}
	if r.System == "" {
		r.System = "x86_64-linux"
	}
	return r
}
