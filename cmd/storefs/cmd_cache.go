package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"sort"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/cache"
)

// serveShutdownTimeout is how long `storefs serve` lets downloads in
// progress finish after SIGINT or SIGTERM before it cuts them off.
const serveShutdownTimeout = 5 * time.Second

// serveReadHeaderTimeout bounds how long a client may take to send its
// request headers, so idle connections cannot pile up.
const serveReadHeaderTimeout = 30 * time.Second

func (a *app) cacheCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name:  "key",
			Usage: "make keys that sign binary caches",
			Subcommands: []*cli.Command{
				{
					Name: "generate",
					Usage: "make an ed25519 key pair called NAME: the secret key into SECRET-FILE, the public key\n" +
						"(for trusted-public-keys) into PUBLIC-FILE (default NAME.sec and NAME.pub; like\n" +
						"nix-store --generate-binary-cache-key)",
					ArgsUsage: "NAME [SECRET-FILE PUBLIC-FILE]",
					Action:    a.cmdKeyGenerate,
				},
			},
		},
		{
			Name:  "copy",
			Usage: "copy the closures of store paths to or from a binary cache (like nix copy)",
			Description: "URL is file:///DIR, http://… or https://…, with Nix's parameters: compression=xz|zstd|none,\n" +
				"compression-level=N, secret-key=FILE (sign what is written), priority=N. A .drv PATH means the\n" +
				"derivation file and its closure, not its outputs. --from checks signatures against\n" +
				"trusted-public-keys unless require-sigs is false.",
			ArgsUsage: "(--to URL | --from URL) PATH...",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "to", Usage: "write the paths to the binary cache at `URL` (file:// only)"},
				&cli.StringFlag{Name: "from", Usage: "import the paths from the binary cache at `URL`"},
			},
			Action: a.cmdCopy,
		},
		{
			Name: "serve",
			Usage: "serve the store as a binary cache over HTTP until interrupted (like nix-serve);\n" +
				"prints the URL it serves on",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "listen", Value: "127.0.0.1:5000", Usage: "listen on `ADDR` (host:port; port 0 picks a free one)"},
				&cli.StringFlag{Name: "secret-key", Usage: "sign the narinfos served with the secret key in `FILE`"},
				&cli.IntFlag{Name: "priority", Value: 30, Usage: "the Priority announced in nix-cache-info"},
			},
			Action: a.cmdServe,
		},
	}
}

func (a *app) cmdKeyGenerate(c *cli.Context) error {
	if c.NArg() != 1 && c.NArg() != 3 {
		return fmt.Errorf("key generate needs NAME, or NAME SECRET-FILE PUBLIC-FILE")
	}
	name, secFile, pubFile := c.Args().Get(0), c.Args().Get(0)+".sec", c.Args().Get(0)+".pub"
	if c.NArg() == 3 {
		secFile, pubFile = c.Args().Get(1), c.Args().Get(2)
	}
	sk, err := cache.GenerateKey(name, nil)
	if err != nil {
		return err
	}
	// Never overwrite a key: a lost secret key cannot be recovered.
	if err := writeNewFile(secFile, sk.String(), 0o600); err != nil {
		return err
	}
	if err := writeNewFile(pubFile, sk.PublicKey().String(), 0o644); err != nil {
		os.Remove(secFile)
		return err
	}
	return nil
}

// writeNewFile writes data to a file that must not exist yet.
func writeNewFile(name, data string, perm os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("'%s' already exists", name)
	}
	if err != nil {
		return fmt.Errorf("creating key file: %w", err)
	}
	if _, err := f.WriteString(data); err != nil {
		f.Close()
		os.Remove(name)
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}

// cacheOptions turns the settings into the options of the binary caches
// that commands open.
func (a *app) cacheOptions() (*cache.Options, error) {
	connectTimeout, err := a.settings.Seconds("connect-timeout")
	if err != nil {
		return nil, err
	}
	attempts, err := a.settings.Int("download-attempts")
	if err != nil {
		return nil, err
	}
	return &cache.Options{
		StoreDir:         a.storeDir,
		ConnectTimeout:   connectTimeout,
		DownloadAttempts: int(attempts),
		// As curl, which Nix uses, honours http_proxy and friends.
		Proxy:  http.ProxyFromEnvironment,
		Logger: a.logger,
	}, nil
}

// trustedKeys returns the keys substitutes must be signed with, or nil
// when require-sigs is false.
func (a *app) trustedKeys() (cache.PublicKeys, error) {
	require, err := a.settings.Bool("require-sigs")
	if err != nil || !require {
		return nil, err
	}
	keys, err := cache.ParsePublicKeys(a.settings.Strings("trusted-public-keys"))
	if err != nil {
		return nil, fmt.Errorf("setting 'trusted-public-keys': %w", err)
	}
	return keys, nil
}

func (a *app) cmdCopy(c *cli.Context) error {
	to, from := c.String("to"), c.String("from")
	if (to == "") == (from == "") {
		return fmt.Errorf("copy needs exactly one of --to URL and --from URL")
	}
	if c.NArg() == 0 {
		return fmt.Errorf("copy needs at least one PATH")
	}
	paths, err := storePathArgs(a.storeDir, c.Args().Slice())
	if err != nil {
		return err
	}
	opts, err := a.cacheOptions()
	if err != nil {
		return err
	}
	if to != "" {
		bc, err := cache.Open(to, opts)
		if err != nil {
			return err
		}
		return a.withStore(c, func(st *store.Store) error {
			return cache.CopyTo(c.Context, st, bc, paths, &cache.CopyOptions{Logger: a.logger})
		})
	}
	jobs, err := a.settings.Int("max-substitution-jobs")
	if err != nil {
		return err
	}
	bc, err := cache.Open(from, opts)
	if err != nil {
		return err
	}
	keys, err := a.trustedKeys()
	if err != nil {
		return err
	}
	if keys != nil {
		bc = cache.NewSignatureCheckingCache(bc, keys)
	}
	return a.withStore(c, func(st *store.Store) error {
		return cache.CopyFrom(c.Context, st, []cache.Cache{bc}, paths, &cache.CopyOptions{Jobs: int(jobs), Logger: a.logger})
	})
}

func (a *app) cmdServe(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("serve takes no arguments")
	}
	opts := &cache.ServerOptions{Priority: c.Int("priority"), Logger: a.logger}
	if file := c.String("secret-key"); file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("reading secret key: %w", err)
		}
		if opts.SecretKey, err = cache.ParseSecretKey(string(data)); err != nil {
			return fmt.Errorf("secret key %s: %w", file, err)
		}
	}
	return a.withStore(c, func(st *store.Store) error {
		ln, err := net.Listen("tcp", c.String("listen"))
		if err != nil {
			return err
		}
		srv := &http.Server{
			Handler:           cache.NewServer(st, opts),
			ReadHeaderTimeout: serveReadHeaderTimeout,
		}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		fmt.Fprintf(a.stdout, "http://%s\n", ln.Addr())
		select {
		case err := <-served:
			return fmt.Errorf("serving on %s: %w", ln.Addr(), err)
		case <-c.Context.Done():
		}
		ctx, cancel := context.WithTimeout(context.Background(), serveShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
		}
		<-served
		return nil
	})
}

// defaultCachePriority is Nix's priority of a cache whose nix-cache-info
// gives none.
const defaultCachePriority = 50

// substituters opens the caches of the substituters setting, each checking
// signatures (unless require-sigs is false), skipped for a while after it
// fails (a circuit breaker), and remembering narinfo answers in the
// database for their TTLs; ordered by priority, lower first, as in Nix.
// A cache for another store directory fails each lookup with Nix's
// "binary cache '…' is for Nix stores with prefix …" (see cache.Cache).
func (a *app) substituters(ctx context.Context, st *store.Store) ([]cache.Cache, error) {
	urls := a.settings.Strings("substituters")
	if len(urls) == 0 {
		return nil, nil
	}
	opts, err := a.cacheOptions()
	if err != nil {
		return nil, err
	}
	keys, err := a.trustedKeys()
	if err != nil {
		return nil, err
	}
	posTTL, err := a.settings.Seconds("narinfo-cache-positive-ttl")
	if err != nil {
		return nil, err
	}
	negTTL, err := a.settings.Seconds("narinfo-cache-negative-ttl")
	if err != nil {
		return nil, err
	}
	type ranked struct {
		c        cache.Cache
		priority int
	}
	var caches []ranked
	for _, u := range urls {
		c, err := cache.Open(u, opts)
		if err != nil {
			return nil, fmt.Errorf("substituter '%s': %w", u, err)
		}
		if keys != nil {
			c = cache.NewSignatureCheckingCache(c, keys)
		}
		c = cache.NewCircuitBreakerCache(c, &cache.CircuitBreakerOptions{Logger: a.logger})
		c = cache.NewNARInfoCachingCache(c, st.Dir, st.DB, posTTL, negTTL)
		priority := defaultCachePriority
		if len(urls) > 1 {
			// Only an order among several needs nix-cache-info now
			// (each cache reads it anyway before its first lookup).
			// A cache that cannot say is tried at the default
			// priority: one that is down is skipped by its circuit
			// breaker, which warns, and one for another store
			// directory stays, to fail every lookup with why.
			info, err := c.Info(ctx)
			switch {
			case err == nil:
				if info.Priority != 0 {
					priority = info.Priority
				}
			case errors.Is(err, cache.ErrNotFound), errors.Is(err, cache.ErrUnavailable):
			default:
				a.logger.Warn("substituter cannot be used", "substituter", c.URL(), "err", err)
			}
		}
		caches = append(caches, ranked{c, priority})
	}
	sort.SliceStable(caches, func(i, j int) bool { return caches[i].priority < caches[j].priority })
	out := make([]cache.Cache, len(caches))
	for i, r := range caches {
		out[i] = r.c
	}
	return out, nil
}
