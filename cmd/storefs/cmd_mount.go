package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/storefs/storefs/daemon"
	"github.com/storefs/storefs/fs"
	"github.com/storefs/storefs/realise"
	"github.com/storefs/storefs/store"
)

// shared is what the mount daemon lends the commands it runs.
type shared struct {
	st *store.Store
	w  *realise.Worker
	// settings are the daemon's, with which w was made.
	settings *Settings
	srv      *fs.Server
}

// flushTimeout bounds how long a command run by the daemon waits for the
// mount to show its changes (see fs.Server.Flush): a lookup that waits
// for a long build holds them up.
const flushTimeout = 2 * time.Second

// failureTTL is how long a failed lookup-triggered build is remembered, so
// that a loop of lookups does not rebuild it endlessly.
const failureTTL = 10 * time.Second

func (a *app) mountCommand() *cli.Command {
	return &cli.Command{
		Name:  "mount",
		Usage: "mount the store directory and build or substitute paths when they are looked up",
		Description: "Runs in the foreground until SIGINT or SIGTERM, then unmounts. MOUNTPOINT defaults to the\n" +
			"store directory (created if missing). While it runs, other storefs commands run inside it\n" +
			"through <state-dir>/daemon.sock.",
		ArgsUsage: "[MOUNTPOINT]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Usage: "mount over a non-empty directory or an existing FUSE mount"},
			&cli.BoolFlag{Name: "debug-fuse", Usage: "log every FUSE request (with --verbose)"},
		},
		Action: a.cmdMount,
	}
}

func (a *app) socketPath() string { return filepath.Join(a.stateDir, "daemon.sock") }

func (a *app) cmdMount(c *cli.Context) error {
	if c.NArg() > 1 {
		return fmt.Errorf("mount takes at most one MOUNTPOINT")
	}
	if a.shared != nil {
		return fmt.Errorf("the store is already mounted by this daemon")
	}
	mountpoint := c.Args().First()
	if mountpoint == "" {
		mountpoint = string(a.storeDir)
	}
	if err := os.MkdirAll(mountpoint, 0o755); err != nil {
		return fmt.Errorf("creating mountpoint: %w", err)
	}
	st, err := a.openStore(c.Context)
	if err != nil {
		return err
	}
	defer st.Close()
	opts, err := a.workerOptions(nil)
	if err != nil {
		return err
	}
	if opts.CancelOrphans, err = a.settings.Bool("cancel-orphaned-builds"); err != nil {
		return err
	}
	w, closeWorker, err := a.makeWorker(st, opts)
	if err != nil {
		return err
	}
	defer closeWorker()
	hold := func(p store.Path) func() { return st.TempRoots.Add(p) }
	res := fs.NewResolver(st.Dir, st, w, failureTTL, hold)
	srv, err := fs.Mount(mountpoint, st.RealDir(), st, res, &fs.Options{
		Force:  c.Bool("force"),
		Debug:  c.Bool("debug-fuse"),
		Logger: a.logger,
	})
	if err != nil {
		return err
	}
	st.OnValid(func(ps []store.Path) {
		for _, p := range ps {
			srv.PathValid(p)
		}
	})
	st.OnInvalid(func(ps []store.Path) {
		for _, p := range ps {
			srv.PathInvalid(p)
		}
	})
	ln, err := daemon.Listen(a.socketPath(), 0o600)
	if err != nil {
		srv.Unmount()
		return fmt.Errorf("listening on %s: %w", a.socketPath(), err)
	}
	defer os.Remove(a.socketPath())
	fmt.Fprintf(a.stderr, "storefs: serving %s on %s (state in %s); stop with Ctrl-C\n", st.Dir, mountpoint, a.stateDir)
	sh := &shared{st: st, w: w, settings: a.settings, srv: srv}
	handler := func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
		return runShared(ctx, args, stdin, stdout, stderr, sh)
	}
	serveErr := daemon.Serve(c.Context, ln, handler, a.logger)
	if err := srv.Unmount(); err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "storefs: unmounted %s\n", mountpoint)
	return serveErr
}

// forwardArgs is the command line to send to the daemon: --option pairs
// restored, and relative paths among the arguments made absolute, since
// the daemon does not share our working directory.
func (a *app) forwardArgs(c *cli.Context) []string {
	out := []string{a.args[0]}
	for _, o := range a.options {
		out = append(out, "--option", o[0], o[1])
	}
	positional := map[string]bool{}
	for _, arg := range c.Args().Slice() {
		positional[arg] = true
	}
	// Flags whose value names a file, which may not exist yet.
	pathFlags := map[string]bool{"--add-root": true, "--secret-key": true}
	for i := 1; i < len(a.args); i++ {
		arg := a.args[i]
		if name, value, ok := strings.Cut(arg, "="); ok && pathFlags[name] {
			arg = name + "=" + absolute(value)
		} else if pathFlags[arg] && i+1 < len(a.args) {
			out = append(out, arg)
			i++
			arg = absolute(a.args[i])
		} else if positional[arg] && !filepath.IsAbs(arg) && !strings.Contains(arg, "://") {
			if _, err := os.Lstat(arg); err == nil {
				arg = absolute(arg)
			}
		}
		out = append(out, arg)
	}
	return out
}

func absolute(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}
