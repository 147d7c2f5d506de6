package cache

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/nar"
)

// CopyTo writes the closures of paths, which must be valid in st, to the
// writable cache c, like `nix copy --to`: a .drv path means the .drv file
// and its closure (as with `nix copy --derivation`). Each path's NAR is
// dumped from the store, checked against the NAR hash the store recorded,
// and compressed as c is configured (PutNAR); then its narinfo, with the
// store's references, deriver, content address and signatures, is
// written (signed if c signs, see NewSigningCache), after those of its
// references. Paths c has already are skipped. c's nix-cache-info is
// written if it has none. Up to opts.Jobs paths are compressed at once
// (default: the number of CPUs).
func CopyTo(ctx context.Context, st *store.Store, c Cache, paths []store.Path, opts *CopyOptions) error {
	o := opts.withDefaults(runtime.NumCPU())
	for _, p := range paths {
		ok, err := st.IsValid(p)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("copying '%s': %w", p, store.ErrNotValid)
		}
	}
	closure, err := st.Closure(paths)
	if err != nil {
		return err
	}
	infos := make(map[store.Path]*store.PathInfo, len(closure))
	for _, p := range closure {
		info, err := st.PathInfo(p)
		if err != nil {
			return err
		}
		infos[p] = info
	}
	if _, err := c.Info(ctx); errors.Is(err, ErrNotFound) {
		if err := c.PutInfo(ctx, &Info{StoreDir: st.Dir}); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	refs := func(p store.Path) []store.Path { return infos[p].References }
	return inOrder(ctx, closure, refs, o.Jobs, func(ctx context.Context, p store.Path) error {
		_, err := c.NARInfo(ctx, p.HashPart())
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrNotFound) {
			return err
		}
		o.Logger.Info("copying path", "path", p, "to", c.URL())
		if err := copyPath(ctx, st, c, infos[p]); err != nil {
			return fmt.Errorf("copying '%s' to '%s': %w", p, c.URL(), err)
		}
		return nil
	})
}

// copyPath writes one path's NAR and narinfo.
func copyPath(ctx context.Context, st *store.Store, c Cache, info *store.PathInfo) error {
	ni := &NARInfo{
		StorePath:  info.Path,
		NARHash:    info.NARHash,
		NARSize:    info.NARSize,
		References: slices.Clone(info.References),
		Deriver:    info.Deriver,
		CA:         info.CA,
		Sigs:       slices.Clone(info.Signatures),
	}
	store.SortPaths(ni.References)
	pr, pw := io.Pipe()
	dumped := make(chan error, 1)
	go func() {
		err := dumpVerified(pw, st.RealPath(info.Path), info)
		// An error here makes PutNAR's next read fail, so it stores
		// nothing: a corrupted path never reaches the cache.
		pw.CloseWithError(err)
		dumped <- err
	}()
	err := c.PutNAR(ctx, ni, pr)
	// Unblock the dump if PutNAR stopped reading early.
	pr.CloseWithError(errors.New("NAR no longer read"))
	if derr := <-dumped; derr != nil && err == nil {
		err = derr
	}
	if err != nil {
		return err
	}
	return c.PutNARInfo(ctx, ni)
}

// dumpVerified writes the NAR of the tree at real to w and fails at the
// end if it is not the NAR the store recorded for info.Path.
func dumpVerified(w io.Writer, real string, info *store.PathInfo) error {
	h := sha256.New()
	var n countingWriter
	if err := nar.Dump(io.MultiWriter(w, h, &n), real); err != nil {
		return err
	}
	got := store.Hash{Algo: store.SHA256, Digest: h.Sum(nil)}
	if !got.Equal(info.NARHash) || n.n != info.NARSize {
		return &mismatchError{fmt.Sprintf("refusing to copy corrupted path '%s' to binary cache: its NAR hash is %s, the store recorded %s", info.Path, got, info.NARHash)}
	}
	return nil
}
