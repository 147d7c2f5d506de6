// Command storefs is a Nix-compatible store whose store directory is a FUSE
// mount that builds or substitutes paths when they are looked up. See
// README.md and `storefs --help`.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/storefs/storefs/daemon"
	"github.com/storefs/storefs/sandbox"
	"github.com/storefs/storefs/store"
)

func main() {
	sandbox.RunChildIfRequested()
	stopProfile := startProfile()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
	stop()
	stopProfile()
	os.Exit(code)
}

// startProfile writes a CPU profile of this process to the file named by
// STOREFS_CPUPROFILE, if set, for finding where a command spends its time
// (`go tool pprof bin/storefs FILE`).
func startProfile() (stop func()) {
	name := os.Getenv("STOREFS_CPUPROFILE")
	if name == "" {
		return func() {}
	}
	f, err := os.Create(name)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "warning: STOREFS_CPUPROFILE: %v\n", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

// app holds what every command needs: the effective settings and where the
// store is. It is filled in by the global flags before a command runs.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	// args is the command line after --option extraction and flag
	// reordering, as a daemon would be sent it.
	args []string
	// shared is set when the command runs inside the mount daemon: it
	// uses the daemon's store and worker.
	shared *shared

	options  [][2]string
	settings *Settings
	storeDir store.Dir
	stateDir string
	logger   *slog.Logger
}

// run runs the command line and returns the process's exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return runShared(ctx, args, stdin, stdout, stderr, nil)
}

// runShared runs the command line, inside the daemon when sh is set.
func runShared(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, sh *shared) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, shared: sh}
	args, opts, err := extractOptions(args)
	if err != nil {
		printError(stderr, err)
		return 1
	}
	a.options = opts
	cliApp := a.cli()
	a.args = flagsFirst(cliApp.Commands, args)
	err = cliApp.RunContext(ctx, a.args)
	if sh != nil {
		// What the command made valid or deleted shows in the mount
		// before the client hears that it is done.
		fctx, cancel := context.WithTimeout(ctx, flushTimeout)
		if ferr := sh.srv.Flush(fctx); ferr != nil && a.logger != nil {
			a.logger.Debug("the mount may show stale entries for a moment", "err", ferr)
		}
		cancel()
	}
	if err != nil {
		printError(stderr, err)
		return exitCode(err)
	}
	return 0
}

// extractOptions takes the global "--option NAME VALUE" pairs (two
// arguments, as in Nix) out of args before the command name, since
// urfave/cli has no two-valued flags.
func extractOptions(args []string) ([]string, [][2]string, error) {
	out := []string{args[0]}
	var opts [][2]string
	valued := map[string]bool{"--store-dir": true, "--state-dir": true}
	for i := 1; i < len(args); i++ {
		arg := args[i]
		switch {
		case arg == "--option":
			if i+2 >= len(args) {
				return nil, nil, fmt.Errorf("flag '--option' needs two arguments: NAME VALUE")
			}
			opts = append(opts, [2]string{args[i+1], args[i+2]})
			i += 2
		case valued[arg] && i+1 < len(args):
			out = append(out, arg, args[i+1])
			i++
		case strings.HasPrefix(arg, "-"):
			out = append(out, arg)
		default:
			// The command name: the rest belongs to it.
			return append(out, args[i:]...), opts, nil
		}
	}
	return out, opts, nil
}

func (a *app) cli() *cli.App {
	return &cli.App{
		Name:  "storefs",
		Usage: "a Nix-compatible store that builds or substitutes paths when they are looked up",
		Description: "Settings use nix.conf's names and syntax. They are read from /etc/storefs/storefs.conf,\n" +
			"then <state-dir>/storefs.conf, then '--option NAME VALUE' (repeatable, given before the command).",
		Writer:          a.stdout,
		ErrWriter:       a.stderr,
		HideHelpCommand: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "store-dir", Value: string(store.DefaultDir), EnvVars: []string{"STOREFS_STORE_DIR"}, Usage: "the logical store directory that paths name"},
			&cli.StringFlag{Name: "state-dir", Value: "/nix/var/storefs", EnvVars: []string{"STOREFS_STATE_DIR"}, Usage: "where the database, the backing store, logs and roots live"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "log debug messages on stderr"},
			// Documented here for --help; extractOptions consumes it.
			&cli.StringSliceFlag{Name: "option", Usage: "set a setting: --option NAME VALUE (two arguments)"},
		},
		Before:   a.setup,
		Commands: a.commands(),
		ExitErrHandler: func(*cli.Context, error) {
			// run prints errors and picks the exit status.
		},
	}
}

// setup turns the global flags and config files into the app's fields.
func (a *app) setup(c *cli.Context) error {
	dir, err := store.ParseDir(c.String("store-dir"))
	if err != nil {
		return fmt.Errorf("--store-dir: %w", err)
	}
	a.storeDir = dir
	a.stateDir, err = filepath.Abs(c.String("state-dir"))
	if err != nil {
		return fmt.Errorf("--state-dir: %w", err)
	}
	level := slog.LevelWarn
	if c.Bool("verbose") {
		level = slog.LevelDebug
	}
	a.logger = slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
	files := []string{"/etc/storefs/storefs.conf", filepath.Join(a.stateDir, "storefs.conf")}
	a.settings, err = loadSettings(files, a.options, func(msg string) {
		fmt.Fprintf(a.stderr, "warning: %s\n", msg)
	})
	return err
}

// openStore opens the store for this command's run, saying so on stderr
// when another process holds it.
func (a *app) openStore(ctx context.Context) (*store.Store, error) {
	return store.Open(ctx, a.stateDir, &store.Options{
		Dir:    a.storeDir,
		Logger: a.logger,
		OnWait: func(pid int) {
			holder := "another process"
			if pid > 0 {
				holder = fmt.Sprintf("process %d", pid)
			}
			fmt.Fprintf(a.stderr, "waiting for the store in %s, held by %s...\n", a.stateDir, holder)
		},
	})
}

// withStore runs fn with the store: the daemon's when the command runs in
// the daemon; else, if a daemon is running, the whole command is sent to
// it; else the store is opened for the command's run.
func (a *app) withStore(c *cli.Context, fn func(st *store.Store) error) (err error) {
	if a.shared != nil {
		return fn(a.shared.st)
	}
	if conn, err := daemon.Dial(a.socketPath()); err == nil {
		code, err := daemon.Run(c.Context, conn, a.forwardArgs(c), a.stdin, a.stdout, a.stderr)
		if err != nil {
			return fmt.Errorf("running the command in the storefs daemon: %w", err)
		}
		if code != 0 {
			return &exitError{code: code}
		}
		return nil
	}
	st, err := a.openStore(c.Context)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := st.Close(); err == nil {
			err = cerr
		}
	}()
	return fn(st)
}

// exitError carries a process exit status other than 1.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

// exitCode is the one place that maps errors to exit statuses.
func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// printError prints err as Nix does: "error: " and continuation lines
// indented to line up under the message.
func printError(w io.Writer, err error) {
	var ee *exitError
	if errors.As(err, &ee) && ee.err == nil {
		return
	}
	lines := strings.Split(strings.TrimRight(err.Error(), "\n"), "\n")
	for i, l := range lines {
		prefix := "       "
		if i == 0 {
			prefix = "error: "
		}
		fmt.Fprintln(w, strings.TrimRight(prefix+l, " "))
	}
}
