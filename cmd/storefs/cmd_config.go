package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

func (a *app) configCommands() *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "show settings",
		Subcommands: []*cli.Command{
			{
				Name:  "show",
				Usage: "print the effective settings as nix.conf lines",
				Action: func(c *cli.Context) error {
					for _, n := range a.settings.Names() {
						fmt.Fprintf(a.stdout, "%s = %s\n", n, a.settings.String(n))
					}
					return nil
				},
			},
		},
	}
}

// commands lists every command, in --help order.
func (a *app) commands() []*cli.Command {
	cmds := a.storeCommands()
	cmds = append(cmds, a.realiseCommands()...)
	cmds = append(cmds, a.mountCommand())
	cmds = append(cmds, a.gcCommands()...)
	cmds = append(cmds, a.cacheCommands()...)
	cmds = append(cmds, a.derivationCommands(), a.configCommands())
	return cmds
}
