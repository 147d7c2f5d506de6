package main

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/storefs/storefs/realise"
	"github.com/storefs/storefs/store"
)

func (a *app) gcCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name:  "gc",
			Usage: "delete the valid paths that no GC root keeps alive (like nix-store --gc)",
			Description: "Roots are the symlinks in <state-dir>/gcroots (and, through gcroots/auto, links made by\n" +
				"realise --add-root), plus what running builds and lookups use. keep-outputs and\n" +
				"keep-derivations apply as in Nix.",
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "dry-run", Usage: "print what would be deleted, delete nothing"},
				&cli.StringFlag{Name: "max-freed", Usage: "stop after freeing `BYTES` (suffixes K, M, G, T)"},
			},
			Action: a.cmdGC,
		},
		{
			Name:   "roots",
			Usage:  "list the GC roots: '<link> -> <store path>'",
			Action: a.cmdRoots,
		},
		{
			Name:  "verify",
			Usage: "check that the database agrees with the backing store (like nix-store --verify)",
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "check-contents", Usage: "also re-hash every path and compare with its NAR hash"},
				&cli.BoolFlag{Name: "repair", Usage: "rebuild or re-substitute paths whose contents are wrong or missing"},
			},
			Action: a.cmdVerify,
		},
	}
}

// parseBytes reads "1024", "10K", "5M", "2G" or "1T".
func parseBytes(s string) (uint64, error) {
	mult := uint64(1)
	if n := len(s); n > 0 {
		switch strings.ToUpper(s[n-1:]) {
		case "K":
			mult = 1 << 10
		case "M":
			mult = 1 << 20
		case "G":
			mult = 1 << 30
		case "T":
			mult = 1 << 40
		}
		if mult > 1 {
			s = s[:n-1]
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("'%s' is not a number of bytes", s)
	}
	return v * mult, nil
}

// gcOptions are the GC settings.
func (a *app) gcOptions() (*store.GCOptions, error) {
	o := &store.GCOptions{}
	var err error
	if o.KeepOutputs, err = a.settings.Bool("keep-outputs"); err != nil {
		return nil, err
	}
	if o.KeepDerivations, err = a.settings.Bool("keep-derivations"); err != nil {
		return nil, err
	}
	return o, nil
}

func (a *app) cmdGC(c *cli.Context) error {
	opts, err := a.gcOptions()
	if err != nil {
		return err
	}
	opts.DryRun = c.Bool("dry-run")
	if s := c.String("max-freed"); s != "" {
		if opts.MaxFreed, err = parseBytes(s); err != nil {
			return fmt.Errorf("--max-freed: %w", err)
		}
	}
	return a.withStore(c, func(st *store.Store) error {
		res, err := st.GC(c.Context, opts)
		if res != nil {
			for _, p := range res.Deleted {
				if opts.DryRun {
					fmt.Fprintln(a.stdout, p)
				} else {
					fmt.Fprintf(a.stderr, "deleting '%s'\n", p)
				}
			}
			verb := "deleted"
			if opts.DryRun {
				verb = "would be deleted"
			}
			fmt.Fprintf(a.stderr, "%d store paths %s, %.2f MiB freed\n", len(res.Deleted), verb, float64(res.BytesFreed)/(1<<20))
			if res.LeftoversFreed > 0 {
				fmt.Fprintf(a.stderr, "leftovers of interrupted work removed, %.2f MiB freed\n", float64(res.LeftoversFreed)/(1<<20))
			}
		}
		return err
	})
}

func (a *app) cmdRoots(c *cli.Context) error {
	return a.withStore(c, func(st *store.Store) error {
		roots, err := st.Roots()
		if err != nil {
			return err
		}
		var lines []string
		for p, links := range roots {
			for _, l := range links {
				lines = append(lines, fmt.Sprintf("%s -> %s", l, p))
			}
		}
		sort.Strings(lines)
		for _, l := range lines {
			fmt.Fprintln(a.stdout, l)
		}
		return nil
	})
}

func (a *app) cmdVerify(c *cli.Context) error {
	return a.withStore(c, func(st *store.Store) error {
		problems, err := st.Verify(c.Bool("check-contents") || c.Bool("repair"))
		if err != nil {
			return err
		}
		for _, p := range problems {
			fmt.Fprintf(a.stderr, "error: %s\n", p.Message)
		}
		if len(problems) == 0 {
			fmt.Fprintln(a.stderr, "the store is consistent")
			return nil
		}
		if !c.Bool("repair") {
			return &exitError{code: 1, err: fmt.Errorf("%d problems found", len(problems))}
		}
		return a.repair(c, st, problems)
	})
}

// repair fixes what repair can: contents that are wrong or missing are
// rebuilt or re-substituted (the worker's repair mode); stray entries are
// removed; the rest is reported.
func (a *app) repair(c *cli.Context, st *store.Store, problems []store.Problem) error {
	w, closeWorker, err := a.newWorker(c, st)
	if err != nil {
		return err
	}
	defer closeWorker()
	var left []string
	var targets []realise.Target
	for _, p := range problems {
		switch p.Kind {
		case "missing", "modified":
			targets = append(targets, realise.Target{Path: p.Path})
		default:
			left = append(left, p.Message)
		}
	}
	if len(targets) > 0 {
		rep, err := w.Realise(c.Context, realise.Request{Targets: targets, KeepGoing: true, Mode: realise.Repair})
		if err != nil {
			return err
		}
		for _, res := range rep.Results {
			if res.Err != nil {
				left = append(left, fmt.Sprintf("cannot repair '%s': %s", res.Target.Path, res.Err.Message(true)))
			} else {
				fmt.Fprintf(a.stderr, "repaired '%s'\n", res.Target.Path)
			}
		}
	}
	if len(left) > 0 {
		return errors.New(strings.Join(left, "\n"))
	}
	return nil
}
