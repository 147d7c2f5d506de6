package cache

import (
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/nar"
)

// Fetch imports the path that ni describes from c into st, as Nix's
// substituter does: the NAR streams from the cache, decompressed, through
// a SHA-256 and a byte count into nar.Restore, which unpacks it in the
// store's temporary area; only when the size and hash match ni (and the
// contents match ni's content address, if any) is the tree moved into
// place and registered (st.AddTree) with ni's references, deriver,
// content address and signatures, not as ultimate. A .drv registered so
// adds its outputs to the output index. Fetch reads at most NarSize+1
// bytes of NAR. On any failure (a bad or truncated NAR, trailing data, a
// mismatch, a failed download) the temporary tree is removed and nothing
// is registered.
//
// Every reference of ni other than the path itself must be valid in st
// already: the caller substitutes references first. A path that is valid
// already is left alone. Fetch takes the path's lock (through AddTree)
// only to move it into place, so callers must not hold it.
func Fetch(ctx context.Context, st *store.Store, c Cache, ni *NARInfo) error {
	if err := fetch(ctx, st, c, ni, false); err != nil {
		return fmt.Errorf("substituting '%s' from '%s': %w", ni.StorePath, c.URL(), err)
	}
	return nil
}

// Repair is Fetch for a path that is valid but whose contents were
// damaged (--repair): the checked download replaces the contents.
func Repair(ctx context.Context, st *store.Store, c Cache, ni *NARInfo) error {
	if err := fetch(ctx, st, c, ni, true); err != nil {
		return fmt.Errorf("repairing '%s' from '%s': %w", ni.StorePath, c.URL(), err)
	}
	return nil
}

func fetch(ctx context.Context, st *store.Store, c Cache, ni *NARInfo, repair bool) error {
	p := ni.StorePath
	if _, err := st.Dir.Parse(string(p)); err != nil {
		return err
	}
	if ni.NARHash.Algo != store.SHA256 || ni.NARSize == 0 {
		return fmt.Errorf("narinfo has no SHA-256 NAR hash or no NAR size")
	}
	var ca *contentAddress
	if ni.CA != "" {
		parsed, err := parseContentAddress(ni.CA)
		if err != nil {
			return err
		}
		ca = &parsed
	}
	valid, err := st.IsValid(p)
	if err != nil || valid && !repair {
		return err
	}
	// Checked again when registering; checked here to spare the download.
	for _, r := range ni.References {
		if r == p {
			continue
		}
		ok, err := st.IsValid(r)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("reference '%s' is not valid: %w", r, store.ErrNotValid)
		}
	}

	tmp, err := st.MkdirTemp("substitute-")
	if err != nil {
		return err
	}
	defer removeAll(tmp)
	tree := filepath.Join(tmp, "nar")

	rc, err := c.NAR(ctx, ni)
	if err != nil {
		return err
	}
	defer rc.Close()
	narHash := sha256.New()
	var size countingWriter
	sinks := []io.Writer{narHash, &size}
	// A recursive content address of another algorithm than SHA-256
	// needs its own hash of the NAR, in the same pass.
	var caHash hash.Hash
	if ca != nil && ca.method == caRecursive && ca.hash.Algo != store.SHA256 {
		caHash = ca.hash.Algo.New()
		sinks = append(sinks, caHash)
	}
	// Reading one byte beyond NarSize tells a longer NAR from a fitting
	// one without reading all of it.
	limited := io.LimitReader(&ctxReader{ctx: ctx, r: rc}, int64(ni.NARSize)+1)
	restoreErr := nar.Restore(io.TeeReader(limited, io.MultiWriter(sinks...)), tree)
	if size.n > ni.NARSize {
		return mismatch("size", p, ni.NARSize, fmt.Sprintf("more than %d bytes", ni.NARSize))
	}
	if restoreErr != nil {
		return restoreErr
	}
	if size.n != ni.NARSize {
		return mismatch("size", p, ni.NARSize, size.n)
	}
	got := store.Hash{Algo: store.SHA256, Digest: narHash.Sum(nil)}
	if !got.Equal(ni.NARHash) {
		return mismatch("hash", p, ni.NARHash, got)
	}
	if ca != nil {
		if err := checkCA(p, *ca, tree, got, caHash); err != nil {
			return err
		}
	}
	info := &store.PathInfo{
		Path:       p,
		NARHash:    ni.NARHash,
		NARSize:    ni.NARSize,
		References: slices.Clone(ni.References),
		Deriver:    ni.Deriver,
		CA:         ni.CA,
		Signatures: sortedUnique(ni.Sigs),
	}
	if !valid {
		return st.AddTree(ctx, tree, info)
	}
	lock, err := st.Locks.Lock(ctx, []store.Path{p})
	if err != nil {
		return err
	}
	defer lock.Unlock()
	if err := store.Canonicalise(tree); err != nil {
		return err
	}
	if err := st.ReplaceValid(tree, p); err != nil {
		return err
	}
	info.RegistrationTime = time.Now()
	return st.Register([]*store.PathInfo{info})
}

// checkCA checks the unpacked tree against its content address, as Nix's
// LocalStore::addToStore does: text and flat hashes are of the single
// file's bytes, recursive ones of the NAR (narHash when SHA-256, caHash
// otherwise).
func checkCA(p store.Path, ca contentAddress, tree string, narHash store.Hash, caHash hash.Hash) error {
	var got store.Hash
	switch {
	case ca.method == caRecursive && caHash == nil:
		got = narHash
	case ca.method == caRecursive:
		got = store.Hash{Algo: ca.hash.Algo, Digest: caHash.Sum(nil)}
	default:
		h, err := store.HashTree(tree, ca.hash.Algo, false)
		if err != nil {
			return fmt.Errorf("checking content address: %w", err)
		}
		got = h
	}
	if !got.Equal(ca.hash) {
		return mismatch("ca hash", p, ca.hash, got)
	}
	return nil
}

// removeAll removes a temporary tree, making its directories writable
// first if needed (a tree that was canonicalised before a failure has
// read-only directories).
func removeAll(path string) error {
	if err := os.RemoveAll(path); err == nil {
		return nil
	}
	filepath.WalkDir(path, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(path)
}
