package fs

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/storefs/storefs/store"
)

// Lister lists the valid paths (the store).
type Lister interface {
	AllValid() ([]store.Path, error)
}

// root is the store directory: its entries are the valid store paths,
// and a lookup of a path that is not valid yet realises it.
type root struct {
	gofs.Inode
	res     *Resolver
	list    Lister
	backing *gofs.LoopbackRoot
	logger  *slog.Logger
	// negativeTimeout is how long the kernel may remember that a name
	// does not exist; within it, a name that becomes valid is invalidated.
	negativeTimeout time.Duration

	mu sync.Mutex
	// negatives are the names answered with ENOENT recently.
	negatives map[string]time.Time
	// pending holds names whose negative entries to invalidate, for the
	// notifier goroutine.
	pending []string
	wake    chan struct{}
	// queued counts the names ever put in pending, sent those the
	// notifier has sent; sentc is closed (and replaced) after each batch.
	// Flush waits with them.
	queued, sent uint64
	sentc        chan struct{}
}

var (
	_ gofs.NodeLookuper  = (*root)(nil)
	_ gofs.NodeReaddirer = (*root)(nil)
	_ gofs.NodeGetattrer = (*root)(nil)
	_ gofs.NodeStatfser  = (*root)(nil)
)

// inodeNumber derives a stable inode number from the backing file, the
// way go-fuse's loopback nodes do for everything below, so numbers never
// collide between the two.
func inodeNumber(st *syscall.Stat_t) uint64 {
	swapped := (uint64(st.Dev) << 32) | (uint64(st.Dev) >> 32)
	return swapped ^ st.Ino
}

func (r *root) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	r.logger.Debug("lookup", "name", name)
	if err := r.res.Resolve(ctx, name); err != nil {
		var re *RealiseError
		switch {
		case errors.Is(err, ErrUnknown) || errors.Is(err, ErrNotStorePath):
			r.mu.Lock()
			r.negatives[name] = time.Now()
			r.mu.Unlock()
		case errors.As(err, &re):
			r.logger.Warn("lookup failed", "path", re.Path, "err", re.Err)
		}
		return nil, errno(err)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(r.backing.Path, name), &st); err != nil {
		return nil, gofs.ToErrno(err)
	}
	out.Attr.FromStat(&st)
	n := &node{&gofs.LoopbackNode{RootData: r.backing}}
	return r.NewInode(ctx, n, gofs.StableAttr{Mode: st.Mode, Ino: inodeNumber(&st)}), 0
}

// Readdir lists the valid paths. The backing directory gives the entry
// types cheaply; the database says which entries are valid.
func (r *root) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	valid, err := r.list.AllValid()
	if err != nil {
		r.logger.Warn("listing valid paths", "err", err)
		return nil, syscall.EIO
	}
	set := make(map[string]bool, len(valid))
	for _, p := range valid {
		set[p.Base()] = true
	}
	entries, err := os.ReadDir(r.backing.Path)
	if err != nil {
		return nil, gofs.ToErrno(err)
	}
	out := make([]fuse.DirEntry, 0, len(valid))
	for _, e := range entries {
		if !set[e.Name()] {
			continue
		}
		mode := uint32(syscall.S_IFREG)
		switch {
		case e.IsDir():
			mode = syscall.S_IFDIR
		case e.Type()&os.ModeSymlink != 0:
			mode = syscall.S_IFLNK
		}
		out = append(out, fuse.DirEntry{Name: e.Name(), Mode: mode})
	}
	return gofs.NewListDirStream(out), 0
}

func (r *root) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	var st syscall.Stat_t
	if err := syscall.Stat(r.backing.Path, &st); err != nil {
		return gofs.ToErrno(err)
	}
	out.FromStat(&st)
	// The root's listing changes as paths become valid: keep its
	// attributes short-lived.
	out.SetTimeout(time.Second)
	return 0
}

func (r *root) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var st syscall.Statfs_t
	if err := syscall.Statfs(r.backing.Path, &st); err != nil {
		return gofs.ToErrno(err)
	}
	out.FromStatfsT(&st)
	return 0
}

// pathValid queues the invalidation of a negative entry for p's name, if
// the kernel may still remember one. It never blocks: the kernel's
// invalidation can wait on a lookup in progress, which may be waiting for
// the very goal that reports p.
func (r *root) pathValid(p store.Path) {
	name := p.Base()
	r.mu.Lock()
	at, ok := r.negatives[name]
	if ok {
		delete(r.negatives, name)
	}
	if ok && time.Since(at) < r.negativeTimeout+time.Second {
		r.pending = append(r.pending, name)
		r.queued++
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
	r.mu.Unlock()
}

// invalidate queues the invalidation of name's entry.
func (r *root) invalidate(name string) {
	r.mu.Lock()
	delete(r.negatives, name)
	r.pending = append(r.pending, name)
	r.queued++
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// notifier sends the queued invalidations until ctx is done.
func (r *root) notifier(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		}
		r.mu.Lock()
		names := r.pending
		r.pending = nil
		r.mu.Unlock()
		for _, name := range names {
			if errno := r.NotifyEntry(name); errno != 0 && errno != syscall.ENOENT {
				r.logger.Debug("invalidating entry", "name", name, "errno", errno)
			}
		}
		r.mu.Lock()
		r.sent += uint64(len(names))
		close(r.sentc)
		r.sentc = make(chan struct{})
		r.mu.Unlock()
	}
}

// flush waits until the notifier has sent what was queued before the
// call, or ctx is done.
func (r *root) flush(ctx context.Context) error {
	r.mu.Lock()
	target := r.queued
	r.mu.Unlock()
	for {
		r.mu.Lock()
		done, ch := r.sent >= target, r.sentc
		r.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// prune forgets old negative names so the map stays small.
func (r *root) prune() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, at := range r.negatives {
		if time.Since(at) > r.negativeTimeout+time.Second {
			delete(r.negatives, name)
		}
	}
}
