package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/nar"
)

func (a *app) storeCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name:      "add",
			Usage:     "add files or directories to the store as source paths (like nix-store --add)",
			ArgsUsage: "PATH... | --text NAME < FILE",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "name", Usage: "name of the store path (default: the base name of PATH)"},
				&cli.StringFlag{Name: "text", Usage: "add standard input as a text file called `NAME` (like builtins.toFile)"},
				&cli.StringSliceFlag{Name: "reference", Usage: "with --text: a store path the text refers to (repeatable)"},
			},
			Action: a.cmdAdd,
		},
		{
			Name:      "path-info",
			Usage:     "show what the store knows of valid paths (like nix path-info)",
			ArgsUsage: "PATH...",
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "json", Usage: "print JSON shaped like nix path-info --json"},
				&cli.BoolFlag{Name: "recursive", Aliases: []string{"r"}, Usage: "include the closures of the paths"},
				&cli.BoolFlag{Name: "all", Usage: "show every valid path"},
				&cli.BoolFlag{Name: "closure-size", Aliases: []string{"S"}, Usage: "show the total NAR size of each path's closure"},
			},
			Action: a.cmdPathInfo,
		},
		{
			Name:      "query",
			Usage:     "query the path-info database (like nix-store --query)",
			ArgsUsage: "PATH...",
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "references", Usage: "the paths each PATH refers to"},
				&cli.BoolFlag{Name: "referrers", Usage: "the valid paths that refer to each PATH"},
				&cli.BoolFlag{Name: "requisites", Aliases: []string{"R"}, Usage: "the closure of the PATHs"},
				&cli.BoolFlag{Name: "deriver", Usage: "the derivation that produced each PATH"},
				&cli.BoolFlag{Name: "outputs", Usage: "the output paths of each derivation PATH"},
				&cli.BoolFlag{Name: "valid-derivers", Usage: "every valid derivation known to produce each PATH"},
			},
			Action: a.cmdQuery,
		},
		{
			Name:      "delete",
			Usage:     "delete valid paths that nothing refers to",
			ArgsUsage: "PATH...",
			Action:    a.cmdDelete,
		},
		{
			Name:  "nar",
			Usage: "write and read NAR archives",
			Subcommands: []*cli.Command{
				{
					Name:      "dump",
					Usage:     "write the NAR of PATH to standard output (a store path is read from the backing store)",
					ArgsUsage: "PATH",
					Action:    a.cmdNarDump,
				},
				{
					Name:      "restore",
					Usage:     "unpack a NAR from standard input into DIR, which must not exist",
					ArgsUsage: "DIR",
					Action:    a.cmdNarRestore,
				},
			},
		},
		{
			Name:  "hash",
			Usage: "compute hashes as nix-hash does",
			Subcommands: []*cli.Command{
				{
					Name:      "path",
					Usage:     "hash the NAR serialisation of each PATH",
					ArgsUsage: "PATH...",
					Flags:     hashFlags(),
					Action:    func(c *cli.Context) error { return a.cmdHash(c, true) },
				},
				{
					Name:      "file",
					Usage:     "hash the contents of each FILE",
					ArgsUsage: "FILE...",
					Flags:     hashFlags(),
					Action:    func(c *cli.Context) error { return a.cmdHash(c, false) },
				},
			},
		},
	}
}

func hashFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "type", Value: "sha256", Usage: "md5, sha1, sha256 or sha512"},
		&cli.BoolFlag{Name: "base32", Usage: "print in nix-base32"},
		&cli.BoolFlag{Name: "base64", Usage: "print in base64"},
		&cli.BoolFlag{Name: "sri", Usage: "print in SRI form (<type>-<base64>)"},
	}
}

// storePathArg resolves a command-line argument to a store path: a store
// path, a file inside one, or a symlink (such as ./result) to one.
func storePathArg(dir store.Dir, arg string) (store.Path, error) {
	s := arg
	for i := 0; i < 40; i++ {
		if abs, err := filepath.Abs(s); err == nil {
			s = abs
		}
		if strings.HasPrefix(s, string(dir)+"/") {
			return dir.ToStorePath(s)
		}
		target, err := os.Readlink(s)
		if err != nil {
			break
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(s), target)
		}
		s = target
	}
	return "", fmt.Errorf("path '%s' is not in the Nix store", arg)
}

func storePathArgs(dir store.Dir, args []string) ([]store.Path, error) {
	out := make([]store.Path, 0, len(args))
	for _, arg := range args {
		p, err := storePathArg(dir, arg)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func (a *app) cmdAdd(c *cli.Context) error {
	if name := c.String("text"); name != "" {
		if c.NArg() > 0 {
			return fmt.Errorf("add --text reads standard input and takes no PATH arguments")
		}
		refs, err := storePathArgs(a.storeDir, c.StringSlice("reference"))
		if err != nil {
			return err
		}
		return a.withStore(c, func(st *store.Store) error {
			contents, err := io.ReadAll(a.stdin)
			if err != nil {
				return fmt.Errorf("reading standard input: %w", err)
			}
			p, err := st.AddText(c.Context, name, contents, refs)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, p)
			return nil
		})
	}
	if c.NArg() == 0 {
		return fmt.Errorf("add needs at least one PATH (or --text NAME)")
	}
	if c.String("name") != "" && c.NArg() > 1 {
		return fmt.Errorf("--name applies to a single PATH")
	}
	return a.withStore(c, func(st *store.Store) error {
		for _, src := range c.Args().Slice() {
			p, err := st.AddPath(c.Context, src, c.String("name"))
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, p)
		}
		return nil
	})
}

func (a *app) cmdPathInfo(c *cli.Context) error {
	if c.Bool("all") == (c.NArg() > 0) {
		return fmt.Errorf("path-info needs either PATHs or --all")
	}
	args, err := storePathArgs(a.storeDir, c.Args().Slice())
	if err != nil {
		return err
	}
	return a.withStore(c, func(st *store.Store) error {
		paths := args
		if c.Bool("all") {
			if paths, err = st.AllValid(); err != nil {
				return err
			}
		} else if c.Bool("recursive") {
			if paths, err = st.Closure(paths); err != nil {
				return err
			}
		}
		var infos []*store.PathInfo
		for _, p := range paths {
			info, err := st.PathInfo(p)
			if err != nil {
				return fmt.Errorf("path '%s' is not valid", p)
			}
			infos = append(infos, info)
		}
		closureSize := func(p store.Path) (*uint64, error) {
			if !c.Bool("closure-size") {
				return nil, nil
			}
			closure, err := st.Closure([]store.Path{p})
			if err != nil {
				return nil, err
			}
			var n uint64
			for _, q := range closure {
				info, err := st.PathInfo(q)
				if err != nil {
					return nil, err
				}
				n += info.NARSize
			}
			return &n, nil
		}
		if c.Bool("json") {
			out := make([]any, 0, len(infos))
			for _, info := range infos {
				cs, err := closureSize(info.Path)
				if err != nil {
					return err
				}
				out = append(out, info.JSONValue(cs))
			}
			b, err := store.MarshalJSON(out)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s\n", b)
			return nil
		}
		// Like nix path-info: with sizes, paths are padded to the
		// longest and sizes right-aligned.
		width := 0
		for _, info := range infos {
			width = max(width, len(info.Path))
		}
		for _, info := range infos {
			cs, err := closureSize(info.Path)
			if err != nil {
				return err
			}
			if cs != nil {
				fmt.Fprintf(a.stdout, "%-*s\t%11d\n", width, info.Path, *cs)
			} else {
				fmt.Fprintln(a.stdout, info.Path)
			}
		}
		return nil
	})
}

func (a *app) cmdQuery(c *cli.Context) error {
	modes := 0
	for _, f := range []string{"references", "referrers", "requisites", "deriver", "outputs", "valid-derivers"} {
		if c.Bool(f) {
			modes++
		}
	}
	if modes != 1 {
		return fmt.Errorf("query needs exactly one of --references, --referrers, --requisites, --deriver, --outputs, --valid-derivers")
	}
	paths, err := storePathArgs(a.storeDir, c.Args().Slice())
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		return fmt.Errorf("query needs at least one PATH")
	}
	return a.withStore(c, func(st *store.Store) error {
		out := store.NewPathSet()
		var lines []string
		for _, p := range paths {
			switch {
			case c.Bool("references"):
				info, err := st.PathInfo(p)
				if err != nil {
					return err
				}
				for _, r := range info.References {
					out.Add(r)
				}
			case c.Bool("referrers"):
				if ok, err := st.IsValid(p); err != nil || !ok {
					return fmt.Errorf("path '%s' is not valid", p)
				}
				refs, err := st.Referrers(p)
				if err != nil {
					return err
				}
				for _, r := range refs {
					out.Add(r)
				}
			case c.Bool("requisites"):
				closure, err := st.Closure([]store.Path{p})
				if err != nil {
					return err
				}
				for _, r := range closure {
					out.Add(r)
				}
			case c.Bool("deriver"):
				info, err := st.PathInfo(p)
				if err != nil {
					return err
				}
				if info.Deriver == "" {
					lines = append(lines, "unknown-deriver")
				} else {
					lines = append(lines, string(info.Deriver))
				}
			case c.Bool("outputs"):
				if !p.IsDerivation() {
					return fmt.Errorf("'%s' is not a derivation", p)
				}
				outs, err := st.DerivationOutputs(p)
				if err != nil {
					return err
				}
				if len(outs) == 0 {
					return fmt.Errorf("derivation '%s' is not valid", p)
				}
				for _, o := range outs {
					out.Add(o)
				}
			case c.Bool("valid-derivers"):
				refs, err := st.Derivers(p)
				if err != nil {
					return err
				}
				for _, r := range refs {
					out.Add(r.Drv)
				}
			}
		}
		sorted := out.Sorted()
		if c.Bool("references") || c.Bool("referrers") || c.Bool("requisites") {
			if sorted, err = dependenciesFirst(st, sorted); err != nil {
				return err
			}
		}
		for _, p := range sorted {
			lines = append(lines, string(p))
		}
		for _, l := range lines {
			fmt.Fprintln(a.stdout, l)
		}
		return nil
	})
}

func (a *app) cmdDelete(c *cli.Context) error {
	paths, err := storePathArgs(a.storeDir, c.Args().Slice())
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		return fmt.Errorf("delete needs at least one PATH")
	}
	return a.withStore(c, func(st *store.Store) error {
		if err := st.Delete(paths); err != nil {
			return err
		}
		fmt.Fprintf(a.stderr, "%d store paths deleted\n", len(paths))
		return nil
	})
}

func (a *app) cmdNarDump(c *cli.Context) error {
	if c.NArg() != 1 {
		return fmt.Errorf("nar dump needs exactly one PATH")
	}
	src := c.Args().First()
	if strings.HasPrefix(src, string(a.storeDir)+"/") {
		p, err := a.storeDir.ToStorePath(src)
		if err != nil {
			return err
		}
		// Read the backing store, never the mount: the path must be valid.
		return a.withStore(c, func(st *store.Store) error {
			if ok, err := st.IsValid(p); err != nil || !ok {
				return fmt.Errorf("path '%s' is not valid", p)
			}
			rel := strings.TrimPrefix(src, string(p))
			return a.dumpTo(st.RealPath(p) + rel)
		})
	}
	return a.dumpTo(src)
}

func (a *app) dumpTo(src string) error {
	w := bufio.NewWriterSize(a.stdout, 1<<20)
	if err := nar.Dump(w, src); err != nil {
		return err
	}
	return w.Flush()
}

func (a *app) cmdNarRestore(c *cli.Context) error {
	if c.NArg() != 1 {
		return fmt.Errorf("nar restore needs exactly one DIR")
	}
	return nar.Restore(a.stdin, c.Args().First())
}

func (a *app) cmdHash(c *cli.Context, recursive bool) error {
	algo, err := store.ParseHashAlgo(c.String("type"))
	if err != nil {
		return err
	}
	if c.NArg() == 0 {
		return fmt.Errorf("hash needs at least one PATH")
	}
	for _, arg := range c.Args().Slice() {
		h, err := store.HashTree(arg, algo, recursive)
		if err != nil {
			return err
		}
		switch {
		case c.Bool("sri"):
			fmt.Fprintln(a.stdout, h.SRI())
		case c.Bool("base32"):
			fmt.Fprintln(a.stdout, h.Base32())
		case c.Bool("base64"):
			fmt.Fprintln(a.stdout, h.Base64())
		default:
			fmt.Fprintln(a.stdout, h.Base16())
		}
	}
	return nil
}

// dependenciesFirst orders paths (sorted) as nix-store --query prints
// them: each after those of its references that are among them, ties in
// name order (the reverse of Nix's topoSortPaths, which is what it
// prints).
func dependenciesFirst(st *store.Store, paths []store.Path) ([]store.Path, error) {
	in := map[store.Path]bool{}
	for _, p := range paths {
		in[p] = true
	}
	out := make([]store.Path, 0, len(paths))
	visited := map[store.Path]bool{}
	var visit func(p store.Path) error
	visit = func(p store.Path) error {
		if visited[p] {
			return nil
		}
		visited[p] = true
		info, err := st.PathInfo(p)
		if err != nil {
			return err
		}
		refs := append([]store.Path(nil), info.References...)
		store.SortPaths(refs)
		for _, r := range refs {
			if r != p && in[r] {
				if err := visit(r); err != nil {
					return err
				}
			}
		}
		out = append(out, p)
		return nil
	}
	for _, p := range paths {
		if err := visit(p); err != nil {
			return nil, err
		}
	}
	return out, nil
}
