package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/storefs/storefs/store"
)

func (a *app) derivationCommands() *cli.Command {
	return &cli.Command{
		Name:  "derivation",
		Usage: "add and show derivations",
		Subcommands: []*cli.Command{
			{
				Name:  "add",
				Usage: "add a derivation given as JSON (the form of 'derivation show') or ATerm, from FILE or standard input",
				Description: "Empty output paths are filled in, as 'nix derivation add' does; the name comes from the\n" +
					"derivation's \"name\" (or env.name), never from the file name. Prints the .drv path.",
				ArgsUsage: "[FILE]",
				Action:    a.cmdDerivationAdd,
			},
			{
				Name:      "show",
				Usage:     "print derivations as JSON keyed by their .drv path",
				ArgsUsage: "PATH...",
				Action:    a.cmdDerivationShow,
			},
		},
	}
}

func (a *app) cmdDerivationAdd(c *cli.Context) error {
	if c.NArg() > 1 {
		return fmt.Errorf("derivation add takes at most one FILE")
	}
	return a.withStore(c, func(st *store.Store) error {
		var data []byte
		var err error
		if f := c.Args().First(); f != "" && f != "-" {
			data, err = os.ReadFile(f)
		} else {
			data, err = io.ReadAll(io.LimitReader(a.stdin, store.MaxDerivationSize+1))
		}
		if err != nil {
			return fmt.Errorf("reading derivation: %w", err)
		}
		d, err := parseDerivationInput(a.storeDir, data)
		if err != nil {
			return err
		}
		p, err := st.AddDerivation(c.Context, d)
		if err != nil {
			return err
		}
		fmt.Fprintln(a.stdout, p)
		return nil
	})
}

// parseDerivationInput reads JSON, or ATerm when the text starts with
// "Derive(" (the name then comes from env.name).
func parseDerivationInput(dir store.Dir, data []byte) (*store.Derivation, error) {
	trimmed := bytes.TrimSpace(data)
	if !bytes.HasPrefix(trimmed, []byte("Derive(")) {
		return store.ParseDerivationJSON(dir, data)
	}
	d, err := store.ParseDerivation(dir, trimmed, "")
	if err != nil {
		return nil, err
	}
	if d.Name = d.Env["name"]; d.Name == "" {
		return nil, fmt.Errorf("ATerm derivation has no 'name' environment variable to name it by")
	}
	return d, nil
}

func (a *app) cmdDerivationShow(c *cli.Context) error {
	paths, err := storePathArgs(a.storeDir, c.Args().Slice())
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		return fmt.Errorf("derivation show needs at least one PATH")
	}
	return a.withStore(c, func(st *store.Store) error {
		out := map[string]json.RawMessage{}
		for _, p := range paths {
			if !p.IsDerivation() {
				return fmt.Errorf("'%s' is not a derivation", p)
			}
			d, err := st.ReadDerivation(p)
			if err != nil {
				return err
			}
			js, err := d.JSON()
			if err != nil {
				return err
			}
			out[string(p)] = js
		}
		b, err := store.MarshalJSON(out)
		if err != nil {
			return err
		}
		var indented bytes.Buffer
		if err := json.Indent(&indented, b, "", "  "); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "%s\n", indented.Bytes())
		return nil
	})
}
