package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/storefs/storefs/realise"
	"github.com/storefs/storefs/sandbox"
	"github.com/storefs/storefs/store"
)

func (a *app) realiseCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name:  "realise",
			Usage: "build or substitute store paths (like nix-store --realise)",
			Description: "PATH is a derivation (optionally with outputs: DRV!out,dev) or any store path, which is\n" +
				"substituted from a binary cache, or else built through the derivation that produces it.\n" +
				"Prints the output paths. The exit status is Nix's: 100 a build failed, 101 timed out,\n" +
				"102 hash mismatch, 104 --check found a difference, 1 other errors.",
			ArgsUsage: "PATH...",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "max-jobs", Aliases: []string{"j"}, Usage: "builds to run at once (a number or 'auto'; setting max-jobs)", DefaultText: "the setting, 1"},
				&cli.IntFlag{Name: "cores", Usage: "NIX_BUILD_CORES for builders (setting cores)", DefaultText: "the setting, all CPUs"},
				&cli.BoolFlag{Name: "keep-going", Aliases: []string{"k"}, Usage: "keep building other paths after a failure"},
				&cli.BoolFlag{Name: "check", Usage: "rebuild valid outputs and compare them (non-determinism check)"},
				&cli.BoolFlag{Name: "repair", Usage: "rebuild outputs whose contents no longer match their hash"},
				&cli.IntFlag{Name: "timeout", Usage: "kill builds running longer than `SECONDS` (setting timeout)", DefaultText: "the setting, no limit"},
				&cli.IntFlag{Name: "max-silent-time", Usage: "kill builds silent for `SECONDS` (setting max-silent-time)", DefaultText: "the setting, no limit"},
				&cli.BoolFlag{Name: "keep-failed", Aliases: []string{"K"}, Usage: "keep the build directory of failed builds"},
				&cli.BoolFlag{Name: "print-build-logs", Aliases: []string{"L"}, Usage: "print build logs on stderr as they come"},
				&cli.BoolFlag{Name: "json", Usage: "print one JSON object per PATH (outputs, status, times, error)"},
				&cli.BoolFlag{Name: "fallback", Usage: "build derivations whose substitutes fail to download (setting fallback)"},
				&cli.StringFlag{Name: "add-root", Usage: "make `LINK` a symlink to the output and a GC root (LINK-2, LINK-dev… for more)"},
			},
			Action: a.cmdRealise,
		},
		{
			Name:      "log",
			Usage:     "print the build log of a derivation or of the derivation of an output path",
			ArgsUsage: "PATH",
			Action:    a.cmdLog,
		},
	}
}

// workerOptions turns the settings (and a command's flags) into the
// worker's options.
func (a *app) workerOptions(c *cli.Context) (*realise.Options, error) {
	s := a.settings
	o := &realise.Options{
		LogDir:        filepath.Join(a.stateDir, "log"),
		System:        s.String("system"),
		Environ:       os.Environ(),
		PostBuildHook: s.String("post-build-hook"),
		Logger:        a.logger,
		CancelOrphans: true,
	}
	var err error
	jobs := s.String("max-jobs")
	if c != nil && c.IsSet("max-jobs") {
		jobs = c.String("max-jobs")
	}
	if jobs == "auto" {
		o.MaxJobs = runtime.NumCPU()
	} else if o.MaxJobs, err = strconv.Atoi(jobs); err != nil || o.MaxJobs < 1 {
		return nil, fmt.Errorf("max-jobs must be a positive number or 'auto', not '%s'", jobs)
	}
	cores, err := s.Int("cores")
	if err != nil {
		return nil, err
	}
	o.Cores = int(cores)
	if o.MaxSilentTime, err = s.Seconds("max-silent-time"); err != nil {
		return nil, err
	}
	if o.Timeout, err = s.Seconds("timeout"); err != nil {
		return nil, err
	}
	if o.MaxLogSize, err = s.Int("max-build-log-size"); err != nil {
		return nil, err
	}
	logLines, err := s.Int("log-lines")
	if err != nil {
		return nil, err
	}
	o.LogLines = int(logLines)
	if o.LogLines == 0 {
		o.LogLines = -1
	}
	if o.Sandbox, err = s.Bool("sandbox"); err != nil {
		return nil, err
	}
	if o.KeepFailed, err = s.Bool("keep-failed"); err != nil {
		return nil, err
	}
	if o.Fallback, err = s.Bool("fallback"); err != nil {
		return nil, err
	}
	substJobs, err := s.Int("max-substitution-jobs")
	if err != nil {
		return nil, err
	}
	o.MaxSubstitutionJobs = int(substJobs)
	o.ExtraPlatforms = s.Strings("extra-platforms")
	o.SystemFeatures = s.Strings("system-features")
	if o.SandboxPaths, err = parseSandboxPaths(s.Strings("sandbox-paths")); err != nil {
		return nil, err
	}
	// builtin:fetchurl runs in the sandbox, which has none of these files.
	// As in Nix, a netrc file that cannot be read is no netrc.
	o.Netrc, _ = os.ReadFile(s.String("netrc-file"))
	if o.ConnectTimeout, err = s.Seconds("connect-timeout"); err != nil {
		return nil, err
	}
	attempts, err := s.Int("download-attempts")
	if err != nil {
		return nil, err
	}
	o.DownloadAttempts = max(int(attempts), 1) // Nix tries once even with 0
	o.HashedMirrors = s.Strings("hashed-mirrors")
	o.DiffHook = s.String("diff-hook")
	o.PreBuildHook = s.String("pre-build-hook")
	if o.RunDiffHook, err = s.Bool("run-diff-hook"); err != nil {
		return nil, err
	}
	if o.KeepOutputs, err = s.Bool("keep-outputs"); err != nil {
		return nil, err
	}
	if o.KeepDerivations, err = s.Bool("keep-derivations"); err != nil {
		return nil, err
	}
	minFree, err := s.Int("min-free")
	if err != nil {
		return nil, err
	}
	maxFree, err := s.Int("max-free")
	if err != nil {
		return nil, err
	}
	o.MinFree, o.MaxFree = uint64(max(minFree, 0)), uint64(max(maxFree, 0))
	// ssl-cert-file's default, as in Nix: the first of these that exists.
	for _, f := range []string{os.Getenv("NIX_SSL_CERT_FILE"), os.Getenv("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"} {
		if data, err := os.ReadFile(f); f != "" && err == nil {
			o.CACerts = data
			break
		}
	}
	if c != nil {
		if c.IsSet("cores") {
			o.Cores = c.Int("cores")
		}
		if c.IsSet("timeout") {
			o.Timeout = time.Duration(c.Int("timeout")) * time.Second
		}
		if c.IsSet("max-silent-time") {
			o.MaxSilentTime = time.Duration(c.Int("max-silent-time")) * time.Second
		}
		if c.Bool("keep-failed") {
			o.KeepFailed = true
		}
		if c.Bool("fallback") {
			o.Fallback = true
		}
	}
	return o, nil
}

// parseSandboxPaths reads sandbox-paths entries: "path", "target=source",
// with a trailing "?" for optional ones.
func parseSandboxPaths(entries []string) ([]sandbox.BindPath, error) {
	var out []sandbox.BindPath
	for _, e := range entries {
		optional := strings.HasSuffix(e, "?")
		e = strings.TrimSuffix(e, "?")
		target, source, ok := strings.Cut(e, "=")
		if !ok {
			source = target
		}
		if !filepath.IsAbs(target) || !filepath.IsAbs(source) {
			return nil, fmt.Errorf("sandbox-paths entry '%s' must use absolute paths", e)
		}
		out = append(out, sandbox.BindPath{Target: target, Source: source, Optional: optional})
	}
	return out, nil
}

// daemonWideSettings are the settings of the mount daemon's worker that a
// request cannot change: they shape the one worker every request shares.
var daemonWideSettings = []string{
	"max-jobs", "max-substitution-jobs", "substituters", "trusted-public-keys",
	"require-sigs", "sandbox", "sandbox-paths", "system", "extra-platforms",
	"system-features", "impersonate-linux-26", "start-id", "id-count",
}

// requestSettings puts the build settings this command sets itself (by
// flag or --option) into req, for the mount daemon's worker, as a Nix
// daemon takes them from each client; settings it does not set stay the
// daemon's, which read the same configuration files. It warns about
// settings it sets that only the daemon decides.
func (a *app) requestSettings(c *cli.Context, req *realise.Request) error {
	opts, err := a.workerOptions(c)
	if err != nil {
		return err
	}
	given := map[string]bool{}
	for _, o := range a.options {
		given[strings.TrimPrefix(o[0], "extra-")] = true
	}
	set := func(name string) bool { return given[name] || c.IsSet(name) }
	if set("fallback") {
		req.Fallback = opts.Fallback
	}
	if set("keep-failed") {
		req.KeepFailed = opts.KeepFailed
	}
	if set("timeout") {
		req.Timeout = opts.Timeout
	}
	if set("max-silent-time") {
		req.MaxSilentTime = opts.MaxSilentTime
	}
	if set("cores") {
		req.Cores = opts.Cores
	}
	for _, name := range daemonWideSettings {
		if !set(name) {
			continue
		}
		mine, theirs := a.settings.String(name), a.shared.settings.String(name)
		if name == "max-jobs" && c.IsSet("max-jobs") {
			mine = c.String("max-jobs")
		}
		if mine != theirs {
			fmt.Fprintf(a.stderr, "warning: '%s' is the mount daemon's ('%s'), not '%s'; restart 'storefs mount' to change it\n", name, theirs, mine)
		}
	}
	return nil
}

// newWorker makes the sandbox runner and the worker for st; in the daemon
// it returns the daemon's worker. close releases it.
func (a *app) newWorker(c *cli.Context, st *store.Store) (w *realise.Worker, close func(), err error) {
	if a.shared != nil {
		return a.shared.w, func() {}, nil
	}
	opts, err := a.workerOptions(c)
	if err != nil {
		return nil, nil, err
	}
	return a.makeWorker(st, opts)
}

// makeWorker makes the sandbox runner and a worker with opts, and the
// substituters. close stops the worker, then the runner's spawner.
func (a *app) makeWorker(st *store.Store, opts *realise.Options) (w *realise.Worker, close func(), err error) {
	subs, err := a.substituters(context.Background(), st)
	if err != nil {
		return nil, nil, err
	}
	opts.Substituters = subs
	startID, err := a.settings.Int("start-id")
	if err != nil {
		return nil, nil, err
	}
	idCount, err := a.settings.Int("id-count")
	if err != nil {
		return nil, nil, err
	}
	kvm := false
	for _, f := range opts.SystemFeatures {
		kvm = kvm || f == "kvm"
	}
	uname26, err := a.settings.Bool("impersonate-linux-26")
	if err != nil {
		return nil, nil, err
	}
	runner, err := sandbox.New(&sandbox.Options{
		StartID:            uint32(startID),
		IDCount:            uint32(idCount),
		Disabled:           !opts.Sandbox,
		KVM:                kvm,
		ImpersonateLinux26: uname26,
		Logger:             a.logger,
	})
	if err != nil {
		return nil, nil, err
	}
	if w, err = realise.New(st, runner, opts); err != nil {
		runner.Close()
		return nil, nil, err
	}
	return w, func() { w.Close(); runner.Close() }, nil
}

// parseTargets reads PATH arguments: a derivation with optional
// "!out,dev", or any store path (also via a symlink such as ./result).
func parseTargets(dir store.Dir, args []string) ([]realise.Target, error) {
	var out []realise.Target
	for _, arg := range args {
		path, outs, hasOuts := strings.Cut(arg, "!")
		p, err := storePathArg(dir, path)
		if err != nil {
			return nil, err
		}
		t := realise.Target{Path: p}
		if hasOuts {
			if !p.IsDerivation() {
				return nil, fmt.Errorf("'%s' selects outputs of '%s', which is not a derivation", arg, p)
			}
			if outs != "*" {
				t.Outputs = strings.Split(outs, ",")
			}
		}
		out = append(out, t)
	}
	return out, nil
}

func (a *app) cmdRealise(c *cli.Context) error {
	if c.NArg() == 0 {
		return fmt.Errorf("realise needs at least one PATH")
	}
	if c.Bool("check") && c.Bool("repair") {
		return fmt.Errorf("--check and --repair cannot be combined")
	}
	targets, err := parseTargets(a.storeDir, c.Args().Slice())
	if err != nil {
		return err
	}
	keepGoing, err := a.settings.Bool("keep-going")
	if err != nil {
		return err
	}
	req := realise.Request{Targets: targets, KeepGoing: keepGoing || c.Bool("keep-going")}
	switch {
	case c.Bool("check"):
		req.Mode = realise.Check
	case c.Bool("repair"):
		req.Mode = realise.Repair
	}
	if a.shared != nil {
		if err := a.requestSettings(c, &req); err != nil {
			return err
		}
	}
	return a.withStore(c, func(st *store.Store) error {
		w, closeWorker, err := a.newWorker(c, st)
		if err != nil {
			return err
		}
		defer closeWorker()
		p := newProgress(a.stderr, c.Bool("print-build-logs"))
		unsubscribe := w.Subscribe(p.event)
		defer unsubscribe()
		if req.Mode == realise.Normal {
			build, fetch, err := w.Missing(c.Context, targets)
			if err != nil {
				return err
			}
			p.announce(build, fetch)
		}
		started := time.Now()
		rep, err := w.Realise(c.Context, req)
		if err == nil && c.String("add-root") != "" {
			var release func()
			if rep, release, err = keepOutputs(c.Context, st, w, req, rep); err == nil {
				defer release()
			}
		}
		p.finish()
		if err != nil {
			return err
		}
		if link := c.String("add-root"); link != "" {
			if err := addRoots(st, link, rep); err != nil {
				return err
			}
		}
		if c.Bool("json") {
			if err := a.printRealiseJSON(rep, started); err != nil {
				return err
			}
		} else {
			for _, res := range rep.Results {
				if !res.Status.Success() {
					continue
				}
				names := make([]string, 0, len(res.Outputs))
				for n := range res.Outputs {
					names = append(names, n)
				}
				sort.Strings(names)
				for _, n := range names {
					fmt.Fprintln(a.stdout, res.Outputs[n])
				}
			}
		}
		if !rep.Failed() {
			return nil
		}
		// Errors not printed while building are printed now; the last one
		// is the command's own.
		var msgs []string
		for _, res := range rep.Results {
			if res.Err == nil || p.printed(res.Err) {
				continue
			}
			if res.Status == realise.Cancelled && c.Context.Err() == nil {
				continue // stopped because another target failed
			}
			msgs = append(msgs, res.Err.Message(!p.logs))
		}
		var last error
		for i, m := range msgs {
			if i == len(msgs)-1 {
				last = errors.New(m)
			} else {
				printError(a.stderr, errors.New(m))
			}
		}
		return &exitError{code: realiseExitCode(rep.Bits()), err: last}
	})
}

// realiseExitCode is Nix's Worker::exitStatus: 0x60 with the failure bits,
// or 1 when no bit is set.
func realiseExitCode(bits realise.ExitBits) int {
	if bits == 0 {
		return 1
	}
	return 0x60 | int(bits)
}

func (a *app) printRealiseJSON(rep *realise.Report, started time.Time) error {
	for _, res := range rep.Results {
		obj := map[string]any{
			"path":      res.Target.String(),
			"status":    res.Status.String(),
			"success":   res.Status.Success(),
			"startTime": started.Unix(),
			"stopTime":  time.Now().Unix(),
		}
		outs := map[string]string{}
		for n, p := range res.Outputs {
			outs[n] = string(p)
		}
		obj["outputs"] = outs
		if res.Err != nil {
			obj["error"] = res.Err.Error()
		}
		b, err := store.MarshalJSON(obj)
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "%s\n", b)
	}
	return nil
}

func (a *app) cmdLog(c *cli.Context) error {
	if c.NArg() != 1 {
		return fmt.Errorf("log needs exactly one PATH")
	}
	p, err := storePathArg(a.storeDir, c.Args().First())
	if err != nil {
		return err
	}
	return a.withStore(c, func(st *store.Store) error {
		drvs := []store.Path{p}
		if !p.IsDerivation() {
			drvs = nil
			if info, err := st.PathInfo(p); err == nil && info.Deriver != "" {
				drvs = append(drvs, info.Deriver)
			}
			refs, err := st.Derivers(p)
			if err != nil {
				return err
			}
			for _, r := range refs {
				drvs = append(drvs, r.Drv)
			}
		}
		logDir := filepath.Join(a.stateDir, "log")
		for _, d := range drvs {
			b, err := realise.ReadLog(logDir, d)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			_, err = a.stdout.Write(b)
			return err
		}
		return fmt.Errorf("build log of '%s' is not available", p)
	})
}

// addRoots makes link point to the first output realised, and link-N
// (link-<output> for outputs other than out) to the others, each a GC
// root, as nix-store --realise --add-root names them.
// keepOutputs holds the outputs of rep's successful targets with temporary
// roots until release is called, so that they live until --add-root makes
// them permanent: the goals' own roots end with Realise, and in the mount
// daemon a garbage collection may run in between. If one did, what it
// took is realised again.
func keepOutputs(ctx context.Context, st *store.Store, w *realise.Worker, req realise.Request, rep *realise.Report) (_ *realise.Report, release func(), err error) {
	for attempt := 0; ; attempt++ {
		var outs []store.Path
		for _, res := range rep.Results {
			if res.Status.Success() {
				for _, p := range res.Outputs {
					outs = append(outs, p)
				}
			}
		}
		release := st.TempRoots.Add(outs...)
		allValid := true
		for _, p := range outs {
			ok, err := st.IsValid(p)
			if err != nil {
				release()
				return nil, nil, err
			}
			allValid = allValid && ok
		}
		if allValid {
			return rep, release, nil
		}
		release()
		if attempt == 2 {
			return nil, nil, fmt.Errorf("the outputs were garbage-collected again and again before --add-root could make them roots; try again when no collection runs")
		}
		if rep, err = w.Realise(ctx, req); err != nil {
			return nil, nil, err
		}
	}
}

func addRoots(st *store.Store, link string, rep *realise.Report) error {
	n := 0
	for _, res := range rep.Results {
		if !res.Status.Success() {
			continue
		}
		names := make([]string, 0, len(res.Outputs))
		for o := range res.Outputs {
			names = append(names, o)
		}
		sort.Strings(names)
		for _, o := range names {
			n++
			name := link
			switch {
			case o != "out":
				name = link + "-" + o
			case n > 1:
				name = fmt.Sprintf("%s-%d", link, n)
			}
			if err := st.AddRoot(name, res.Outputs[o]); err != nil {
				return err
			}
		}
	}
	return nil
}
