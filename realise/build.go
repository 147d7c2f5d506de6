package realise

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/storefs/storefs/sandbox"
	"github.com/storefs/storefs/store"
)

// Causes of a build's cancellation that the goal owns.
var (
	errTimeout = errors.New("build timeout")
	errSilence = errors.New("build silent for too long")
)

// build is one run of a derivation's builder and the registration of its
// outputs. The goal holds the build slot and the output locks throughout.
type build struct {
	w       *Worker
	g       *goal
	drvPath store.Path
	drv     *store.Derivation
	attrs   *store.Attrs
	inputs  store.PathSet
	mode    BuildMode

	// tmp is this build's directory in the store's temporary area: the
	// sandbox makes its chroot there and leaves the outputs in outDir.
	tmp    string
	outDir string
	// buildDir is the build directory the sandbox kept (keep-failed),
	// until finish keeps or removes it.
	buildDir string
}

// run runs the builder in the sandbox. A failure is a *BuildError with
// Nix's status and message.
func (b *build) run() *BuildError {
	w := b.w
	be, err := w.makeBuildEnv(b.drv, b.attrs, b.inputs)
	if err != nil {
		return newBuildError(b.drvPath, MiscFailure, "%v", err)
	}
	b.tmp, err = w.st.MkdirTemp("build-" + b.drv.Name + "-")
	if err != nil {
		return newBuildError(b.drvPath, MiscFailure, "%v", err)
	}
	// The sandbox's helper runs as an unmapped user in its namespace and
	// must be able to traverse to the chroot it makes here.
	if err := os.Chmod(b.tmp, 0o711); err != nil {
		return newBuildError(b.drvPath, MiscFailure, "%v", err)
	}
	b.outDir = filepath.Join(b.tmp, "outputs")
	if err := os.Mkdir(b.outDir, 0o755); err != nil {
		return newBuildError(b.drvPath, MiscFailure, "%v", err)
	}
	spec := &sandbox.Spec{
		StoreDir:     string(w.st.Dir),
		TempDir:      b.tmp,
		Name:         b.drv.Name,
		Builder:      b.drv.Builder,
		Args:         b.drv.Args,
		Env:          be.env,
		Files:        be.files,
		Inputs:       make(map[string]string, len(b.inputs)),
		OutputDir:    b.outDir,
		FixedOutput:  b.drv.IsFixedOutput(),
		SandboxPaths: w.opts.SandboxPaths,
		Cores:        b.g.pol.cores,
		System:       b.drv.Platform,
		// Nix never keeps a builtin's build directory (where it writes
		// the netrc credentials).
		KeepBuildDir: b.g.pol.keepFailed && !strings.HasPrefix(b.drv.Builder, "builtin:"),

		Netrc:            w.opts.Netrc,
		CACerts:          w.opts.CACerts,
		ConnectTimeout:   w.opts.ConnectTimeout,
		DownloadAttempts: w.opts.DownloadAttempts,
		HashedMirrors:    w.opts.HashedMirrors,
	}
	for p := range b.inputs {
		spec.Inputs[string(p)] = w.st.RealPath(p)
	}
	for _, name := range b.drv.OutputNames() {
		spec.Outputs = append(spec.Outputs, string(b.drv.Outputs[name].Path))
	}
	if w.opts.PreBuildHook != "" {
		extra, err := w.runPreBuildHook(b.g.ctx, b.drvPath)
		if err != nil {
			return newBuildError(b.drvPath, MiscFailure, "%v", err)
		}
		spec.SandboxPaths = append(append([]sandbox.BindPath(nil), spec.SandboxPaths...), extra...)
	}
	if spec.FixedOutput {
		names, err := b.attrs.ImpureEnvVars()
		if err != nil {
			return newBuildError(b.drvPath, MiscFailure, "%v", err)
		}
		spec.ImpureEnv = impureEnv(names, w.opts.Environ)
	}

	ctx, cancel := context.WithCancelCause(b.g.ctx)
	defer cancel(nil)
	activity := func() {}
	if d := b.g.pol.maxSilentTime; d > 0 {
		t := time.AfterFunc(d, func() { cancel(errSilence) })
		defer t.Stop()
		activity = func() { t.Reset(d) }
	}
	if d := b.g.pol.timeout; d > 0 {
		t := time.AfterFunc(d, func() { cancel(errTimeout) })
		defer t.Stop()
	}
	log, err := w.newBuildLog(b.drvPath, activity)
	if err != nil {
		return newBuildError(b.drvPath, MiscFailure, "%v", err)
	}
	w.emit(Event{Kind: BuildStarted, Drv: b.drvPath, Mode: b.mode})
	w.logger.Info("building", "drv", b.drvPath)
	res, runErr := w.runner.Run(ctx, spec, log)
	failed := runErr != nil || res.ExitCode != 0
	if failed {
		// What a failed builder wrote goes before the log is finished:
		// a builder that filled the disk must not cost us its log.
		if err := store.RemoveTree(b.outDir); err != nil {
			w.logger.Warn("removing outputs of a failed build", "drv", b.drvPath, "err", err)
		}
	}
	if err := log.Close(); err != nil {
		err = fmt.Errorf("writing the build log of '%s': %w", b.drvPath, err)
		if !failed {
			runErr = err
		} else {
			// The build's own failure is the one to report.
			w.logger.Warn("build log incomplete", "drv", b.drvPath, "err", err)
		}
	}
	if res != nil {
		b.buildDir = res.BuildDir
	}
	cause := context.Cause(ctx)
	switch {
	case errors.Is(runErr, errLogLimit):
		return newBuildError(b.drvPath, LogLimitExceeded, "%s killed after writing more than %d bytes of log output", b.goalName(), w.opts.MaxLogSize)
	case runErr != nil && errors.Is(cause, errTimeout):
		return newBuildError(b.drvPath, TimedOut, "%s timed out after %d seconds", b.goalName(), int(b.g.pol.timeout/time.Second))
	case runErr != nil && errors.Is(cause, errSilence):
		return newBuildError(b.drvPath, TimedOut, "%s timed out after %d seconds of silence", b.goalName(), int(b.g.pol.maxSilentTime/time.Second))
	case runErr != nil && b.g.ctx.Err() != nil:
		return cancelled(b.drvPath, context.Cause(b.g.ctx)).err
	case runErr != nil:
		return newBuildError(b.drvPath, MiscFailure, "%v", runErr)
	}
	if res.ExitCode != 0 {
		status := PermanentFailure
		if spec.FixedOutput {
			// A fetcher may fail for reasons outside the derivation.
			status = TransientFailure
		}
		e := newBuildError(b.drvPath, status, "builder for '%s' %s", b.drvPath, exitString(res))
		e.LogTail = log.Tail()
		return e
	}
	return nil
}

// goalName is Nix's name of a derivation goal, used in its timeout and
// log-limit messages.
func (b *build) goalName() string {
	want := "*"
	if ws := b.w.wantedOutputs(b.g); ws != nil {
		names := make([]string, 0, len(ws))
		for n := range ws {
			names = append(names, n)
		}
		sort.Strings(names)
		want = strings.Join(names, ",")
	}
	return fmt.Sprintf("building of '%s!%s' from .drv file", b.drvPath, want)
}

// exitString is Nix's statusToString of a failed builder.
func exitString(res *sandbox.Result) string {
	if res.Signal != 0 {
		desc := res.Signal.String()
		if desc != "" {
			desc = strings.ToUpper(desc[:1]) + desc[1:]
		}
		return fmt.Sprintf("failed due to signal %d (%s)", int(res.Signal), desc)
	}
	return fmt.Sprintf("failed with exit code %d", res.ExitCode)
}

// impureEnv takes the values of the named variables from environ.
func impureEnv(names, environ []string) map[string]string {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && want[k] {
			out[k] = v
		}
	}
	return out
}

// finish keeps the build directory of a failed build (the builder failed,
// or its outputs were refused) under <state>/failed when keep-failed
// asked for it, and says where; a successful build's goes.
func (b *build) finish(ok bool) {
	dir := b.buildDir
	b.buildDir = ""
	if dir == "" {
		return
	}
	if ok {
		os.RemoveAll(dir)
		return
	}
	keepRoot := filepath.Join(b.w.st.StateDir(), "failed")
	if err := os.MkdirAll(keepRoot, 0o700); err != nil {
		b.w.logger.Warn("cannot keep build directory", "drv", b.drvPath, "err", err)
		os.RemoveAll(dir)
		return
	}
	kept, err := os.MkdirTemp(keepRoot, b.drv.Name+"-")
	if err == nil {
		err = os.Rename(dir, filepath.Join(kept, "build"))
	}
	if err != nil {
		b.w.logger.Warn("cannot keep build directory", "drv", b.drvPath, "err", err)
		os.RemoveAll(dir)
		return
	}
	b.w.emit(Event{Kind: Note, Drv: b.drvPath, Line: fmt.Sprintf("note: keeping build directory '%s'", filepath.Join(kept, "build"))})
}

// cleanup removes what is left of the build's temporary directory.
func (b *build) cleanup() {
	if b.tmp != "" {
		if err := store.RemoveTree(b.tmp); err != nil {
			b.w.logger.Warn("removing build directory", "drv", b.drvPath, "err", err)
		}
	}
}

// runPreBuildHook runs pre-build-hook with the derivation's path and reads
// its answer (Nix's protocol): "extra-sandbox-paths" (or the old
// "extra-chroot-dirs") then one path per line, "target=source" or both
// the same, up to an empty line.
func (w *Worker) runPreBuildHook(ctx context.Context, drvPath store.Path) ([]sandbox.BindPath, error) {
	cmd := exec.CommandContext(ctx, w.opts.PreBuildHook, string(drvPath))
	cmd.Env = w.opts.Environ
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("pre-build-hook '%s' for '%s' failed: %w", w.opts.PreBuildHook, drvPath, err)
	}
	var paths []sandbox.BindPath
	inPaths := false
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case !inPaths && line == "":
		case !inPaths && (line == "extra-sandbox-paths" || line == "extra-chroot-dirs"):
			inPaths = true
		case !inPaths:
			return nil, fmt.Errorf("unknown pre-build hook command '%s'", line)
		case line == "":
			inPaths = false
		default:
			target, source, ok := strings.Cut(line, "=")
			if !ok {
				source = target
			}
			paths = append(paths, sandbox.BindPath{Target: target, Source: source})
		}
	}
	return paths, nil
}
