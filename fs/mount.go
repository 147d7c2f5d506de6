package fs

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/storefs/storefs/store"
)

// Default cache timeouts. Valid paths never change, so the kernel may keep
// their entries and attributes for long; a name that does not exist yet
// may appear at any moment, so negative entries are short-lived (and
// invalidated at once when the path becomes valid).
const (
	DefaultEntryTimeout    = time.Hour
	DefaultNegativeTimeout = time.Second
)

// Options configure Mount. A nil *Options means all defaults.
type Options struct {
	// EntryTimeout is how long the kernel keeps entries and attributes of
	// valid paths. Zero means DefaultEntryTimeout.
	EntryTimeout time.Duration
	// NegativeTimeout is how long it remembers a name that does not
	// exist. Zero means DefaultNegativeTimeout.
	NegativeTimeout time.Duration
	// Force mounts over a non-empty directory or an existing FUSE mount.
	Force bool
	// Debug logs every FUSE request (at Debug level).
	Debug bool
	// Logger receives warnings (failed lookups) and debug messages. Nil
	// discards them.
	Logger *slog.Logger
}

// Server is a mounted store directory.
type Server struct {
	srv    *fuse.Server
	root   *root
	cancel context.CancelFunc
	done   chan struct{}
	dir    string
}

// Mount mounts the store at mountpoint: read-only, with allow_other and
// default_permissions, serving valid paths from realDir (the backing
// directory) and realising others through res. It returns once the kernel
// has the mount.
func Mount(mountpoint, realDir string, list Lister, res *Resolver, opts *Options) (*Server, error) {
	if opts == nil {
		opts = &Options{}
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	entry, negative := opts.EntryTimeout, opts.NegativeTimeout
	if entry == 0 {
		entry = DefaultEntryTimeout
	}
	if negative == 0 {
		negative = DefaultNegativeTimeout
	}
	if !opts.Force {
		if err := checkMountpoint(mountpoint); err != nil {
			return nil, err
		}
	}
	var st syscall.Stat_t
	if err := syscall.Stat(realDir, &st); err != nil {
		return nil, fmt.Errorf("backing directory %s: %w", realDir, err)
	}
	r := &root{
		res:             res,
		list:            list,
		backing:         &gofs.LoopbackRoot{Path: realDir, Dev: uint64(st.Dev)},
		logger:          logger,
		negativeTimeout: negative,
		negatives:       map[string]time.Time{},
		wake:            make(chan struct{}, 1),
		sentc:           make(chan struct{}),
	}
	r.backing.RootNode = r
	fsOpts := &gofs.Options{
		EntryTimeout:    &entry,
		AttrTimeout:     &entry,
		NegativeTimeout: &negative,
		MountOptions: fuse.MountOptions{
			AllowOther: true,
			FsName:     "storefs",
			Name:       "storefs",
			// As root we mount with mount(2) directly, without fusermount.
			// noatime is a flag there: as an option the kernel refuses
			// it and go-fuse falls back to fusermount.
			DirectMount:      os.Geteuid() == 0,
			DirectMountFlags: syscall.MS_RDONLY | syscall.MS_NOATIME | syscall.MS_NOSUID | syscall.MS_NODEV,
			Options:          mountOptions(),
			Debug:            opts.Debug,
			Logger:           log.New(slogWriter{logger}, "", 0),
			// Lookups block while paths are built: let many run at once.
			MaxBackground: 64,
		},
	}
	srv, err := gofs.Mount(mountpoint, r, fsOpts)
	if err != nil {
		return nil, fmt.Errorf("mounting the store on %s: %w", mountpoint, err)
	}
	if srv.KernelSettings().Flags64()&fuse.CAP_PASSTHROUGH == 0 {
		logger.Warn("the kernel offers no FUSE passthrough (Linux 6.9+); file reads go through storefs")
	} else {
		logger.Debug("FUSE passthrough available: file reads bypass storefs")
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{srv: srv, root: r, cancel: cancel, done: make(chan struct{}), dir: mountpoint}
	go func() {
		defer close(s.done)
		r.notifier(ctx)
	}()
	go func() {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				r.prune()
			}
		}
	}()
	return s, nil
}

// PathValid tells the mount that p became valid by some route (a build, a
// substitution, a CLI command), so that a lookup that was answered ENOENT
// a moment ago sees it at once.
func (s *Server) PathValid(p store.Path) {
	s.root.res.Forget(p)
	s.root.pathValid(p)
}

// PathInvalid tells the mount that p stopped being valid (garbage
// collected or deleted), so that the kernel forgets its entry.
func (s *Server) PathInvalid(p store.Path) {
	s.root.invalidate(p.Base())
}

// Flush waits until the kernel was told of every path that became valid
// or invalid before the call (PathValid, PathInvalid), or ctx is done.
// The telling runs in its own goroutine, because the kernel holds it up
// while any lookup in the store directory is in progress (which may be
// the one waiting for the path); a command that changed the store calls
// Flush, outside any lookup, before it reports that it is done, so that
// what it made valid is there at once.
func (s *Server) Flush(ctx context.Context) error { return s.root.flush(ctx) }

// Unmount unmounts the store. If the mount is busy it is detached lazily,
// so that no stale mount remains either way.
func (s *Server) Unmount() error {
	s.cancel()
	<-s.done
	err := s.srv.Unmount()
	if err != nil {
		if derr := syscall.Unmount(s.dir, syscall.MNT_DETACH); derr != nil {
			return fmt.Errorf("unmounting %s: %w (lazy unmount: %v)", s.dir, err, derr)
		}
	}
	s.srv.Wait()
	return nil
}

// checkMountpoint refuses a non-empty directory and an existing FUSE
// mount: mounting there would hide what is there, or stack storefs on
// itself.
func checkMountpoint(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("reading mount table: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// mountinfo: ... mountpoint(5th) ... " - " fstype
		if len(fields) < 5 || unescapeMountinfo(fields[4]) != abs {
			continue
		}
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && strings.HasPrefix(fields[i+1], "fuse") {
				return fmt.Errorf("%s is already a FUSE mount (%s); use --force to mount over it", abs, fields[i+1])
			}
		}
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		return fmt.Errorf("mountpoint %s: %w", abs, err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("mountpoint %s is not empty; use --force to mount over it", abs)
	}
	return nil
}

// unescapeMountinfo undoes the octal escapes of mountinfo fields.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// slogWriter sends go-fuse's log lines to slog at Debug level.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Debug(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// mountOptions are the mount's options as strings: for mount(2) (as root)
// the ones that are not flags (DirectMountFlags), for fusermount all.
func mountOptions() []string {
	if os.Geteuid() == 0 {
		return []string{"ro", "default_permissions"}
	}
	return []string{"ro", "noatime", "default_permissions"}
}
