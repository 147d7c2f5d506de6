package cache

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/storefs/storefs/store"
)

// narDir is the directory of a cache that holds the NAR files.
const narDir = "nar"

// writeBufSize is the buffer between a compressor and the file it
// writes, so that small compressed blocks become large writes.
const writeBufSize = 256 << 10

// fileCache is a binary cache in a local directory, as Nix's
// LocalBinaryCacheStore: <dir>/nix-cache-info, <dir>/<hash>.narinfo and
// <dir>/nar/<file hash>.nar.<ext>.
type fileCache struct {
	dir  string
	o    *options
	info *infoMemo
}

// NewFileCache returns the binary cache in directory dir (file://dir). It
// touches nothing until used: reading a directory that is not there
// finds nothing (ErrNotFound), and writing creates it. Files are written
// under temporary names and renamed into place, so readers never see a
// partial file.
func NewFileCache(dir string, opts *Options) (Cache, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("binary cache directory %s: %w", dir, err)
	}
	return &fileCache{dir: abs, o: o, info: newInfoMemo()}, nil
}

func (c *fileCache) URL() string { return "file://" + c.dir }

func (c *fileCache) Info(ctx context.Context) (*Info, error) {
	return c.info.get(ctx, c.readInfo, c.URL(), c.o)
}

func (c *fileCache) readInfo() ([]byte, error) { return c.read(infoFile, maxInfoSize) }

func (c *fileCache) NARInfo(ctx context.Context, hashPart string) (*NARInfo, error) {
	if err := checkHashPart(hashPart); err != nil {
		return nil, err
	}
	if err := c.info.usable(ctx, c.readInfo, c.URL(), c.o); err != nil {
		return nil, err
	}
	name := narInfoFile(hashPart)
	data, err := c.read(name, maxNARInfoSize)
	if err != nil {
		return nil, err
	}
	return parseNARInfoFor(c.o.StoreDir, data, hashPart, fmt.Sprintf("binary cache '%s': %s", c.URL(), name))
}

// read reads a file of the cache of at most limit bytes.
func (c *fileCache) read(name string, limit int64) ([]byte, error) {
	f, err := os.Open(filepath.Join(c.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("binary cache '%s' has no '%s': %w", c.URL(), name, ErrNotFound)
	}
	if err != nil {
		return nil, &unavailableError{fmt.Errorf("binary cache '%s': %w", c.URL(), err)}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, &unavailableError{fmt.Errorf("binary cache '%s': reading %s: %w", c.URL(), name, err)}
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("binary cache '%s': '%s' is larger than %d bytes", c.URL(), name, limit)
	}
	return data, nil
}

func (c *fileCache) NAR(ctx context.Context, ni *NARInfo) (io.ReadCloser, error) {
	if err := c.info.usable(ctx, c.readInfo, c.URL(), c.o); err != nil {
		return nil, err
	}
	rel, err := narPath(ni.URL)
	if err != nil {
		return nil, fmt.Errorf("binary cache '%s', path '%s': %w", c.URL(), ni.StorePath, err)
	}
	f, err := os.Open(filepath.Join(c.dir, filepath.FromSlash(rel)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("binary cache '%s' has no '%s' for '%s': %w", c.URL(), rel, ni.StorePath, ErrNotFound)
	}
	if err != nil {
		return nil, &unavailableError{fmt.Errorf("binary cache '%s': %w", c.URL(), err)}
	}
	dec, err := NewDecompressor(ni.Compression, f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("binary cache '%s', path '%s': %w", c.URL(), ni.StorePath, err)
	}
	return &readCloser{Reader: &ctxReader{ctx: ctx, r: dec}, closers: []io.Closer{dec, f}}, nil
}

func (c *fileCache) PutNAR(ctx context.Context, ni *NARInfo, r io.Reader) error {
	if err := c.putNAR(ctx, ni, r); err != nil {
		return fmt.Errorf("writing NAR of '%s' to '%s': %w", ni.StorePath, c.URL(), err)
	}
	return nil
}

func (c *fileCache) putNAR(ctx context.Context, ni *NARInfo, r io.Reader) (err error) {
	ext, err := compressionExtension(c.o.Compression)
	if err != nil {
		return err
	}
	dir := filepath.Join(c.dir, narDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// The name is the hash of the compressed bytes, known only at the
	// end: write under a temporary name (a dot file, which no narinfo
	// names), then rename.
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	var n countingWriter
	bw := bufio.NewWriterSize(io.MultiWriter(tmp, h, &n), writeBufSize)
	comp, err := newCompressor(c.o.Compression, c.o.CompressionLevel, ni.NARSize, bw)
	if err != nil {
		return err
	}
	if _, err := io.Copy(comp, &ctxReader{ctx: ctx, r: r}); err != nil {
		comp.Close()
		return err
	}
	if err := comp.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	// A narinfo that outlives its NAR after a crash would never be
	// repaired, as CopyTo skips paths the cache has: sync before rename.
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	fileHash := store.Hash{Algo: store.SHA256, Digest: h.Sum(nil)}
	rel := narDir + "/" + fileHash.Base32() + ".nar" + ext
	if err := os.Rename(tmp.Name(), filepath.Join(c.dir, filepath.FromSlash(rel))); err != nil {
		return err
	}
	ni.URL, ni.Compression, ni.FileHash, ni.FileSize = rel, c.o.Compression, fileHash, n.n
	return nil
}

func (c *fileCache) PutNARInfo(ctx context.Context, ni *NARInfo) error {
	if err := ni.check(c.o.StoreDir); err != nil {
		return err
	}
	if err := c.write(narInfoFile(ni.StorePath.HashPart()), ni.String()); err != nil {
		return fmt.Errorf("writing narinfo of '%s' to '%s': %w", ni.StorePath, c.URL(), err)
	}
	return nil
}

func (c *fileCache) PutInfo(ctx context.Context, info *Info) error {
	if err := c.info.forget(ctx); err != nil {
		return err
	}
	if err := c.write(infoFile, info.String()); err != nil {
		return fmt.Errorf("writing nix-cache-info to '%s': %w", c.URL(), err)
	}
	return nil
}

// write replaces the file name in the cache with data, atomically.
func (c *fileCache) write(name, data string) (err error) {
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(c.dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.WriteString(data); err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(c.dir, name))
}

// countingWriter counts the bytes written through it.
type countingWriter struct{ n uint64 }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += uint64(len(p))
	return len(p), nil
}
