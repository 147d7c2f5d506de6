package cache

import (
	"bufio"
	"compress/bzip2"
	"compress/gzip"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Compression methods, as narinfo's Compression field and the
// compression= parameter name them.
const (
	CompressionNone  = "none"
	CompressionXZ    = "xz"
	CompressionZstd  = "zstd"
	CompressionBzip2 = "bzip2" // read only
	CompressionGzip  = "gzip"  // read only
)

// zstdMaxWindow is the largest window a zstd stream may ask for: 128 MiB,
// libzstd's default limit (ZSTD_WINDOWLOG_LIMIT_DEFAULT), so that what
// Nix reads we read, and a hostile stream cannot make us allocate more.
const zstdMaxWindow = 1 << 27

// compressedBufSize is the read buffer in front of decompressors that
// read their input in small pieces (xz, bzip2).
const compressedBufSize = 64 << 10

// compressionExtension is the file name extension Nix gives a NAR
// compressed with method: nar/<hash>.nar<ext>.
func compressionExtension(method string) (string, error) {
	switch method {
	case CompressionNone:
		return "", nil
	case CompressionXZ:
		return ".xz", nil
	case CompressionZstd:
		return ".zst", nil
	case CompressionBzip2:
		return ".bz2", nil
	case CompressionGzip:
		return ".gz", nil
	}
	return "", fmt.Errorf("unknown compression method '%s'", method)
}

// canCompress reports whether NewCompressor supports method.
func canCompress(method string) bool {
	return method == CompressionNone || method == CompressionXZ || method == CompressionZstd
}

// NewDecompressor returns a reader of the data compressed with method in
// r: "none", "xz", "zstd", "bzip2" or "gzip". It streams: nothing but the
// decompressor's window is held in memory. Closing it releases the
// decompressor but does not close r.
func NewDecompressor(method string, r io.Reader) (io.ReadCloser, error) {
	switch method {
	case CompressionNone:
		return io.NopCloser(r), nil
	case CompressionXZ:
		return &lazyReader{what: method, open: func() (io.Reader, error) {
			return xz.NewReader(bufio.NewReaderSize(r, compressedBufSize))
		}}, nil
	case CompressionZstd:
		// One goroutine per stream: substitutions run in parallel, and
		// on a 2-CPU machine the async decoder made Fetch 20% slower by
		// competing with hashing and writing for the CPUs.
		d, err := zstd.NewReader(r, zstd.WithDecoderMaxWindow(zstdMaxWindow), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("starting zstd decompression: %w", err)
		}
		return &zstdReader{d: d}, nil
	case CompressionBzip2:
		return &lazyReader{what: method, open: func() (io.Reader, error) {
			return bzip2.NewReader(bufio.NewReaderSize(r, compressedBufSize)), nil
		}}, nil
	case CompressionGzip:
		return &lazyReader{what: method, open: func() (io.Reader, error) {
			return gzip.NewReader(r)
		}}, nil
	}
	return nil, fmt.Errorf("unknown compression method '%s'", method)
}

// NewCompressor returns a writer that compresses into w with method
// ("none", "xz" or "zstd") at level (0 for the default; see
// Options.CompressionLevel). Close flushes the end of the stream; it does
// not close w.
func NewCompressor(method string, level int, w io.Writer) (io.WriteCloser, error) {
	return newCompressor(method, level, 0, w)
}

// Bounds of the xz dictionary. xz -6, Nix's default, uses 8 MiB. The
// writer's memory grows with the dictionary (about 50 MB at 8 MiB, 0.2 MB
// at 4 KiB), and a dictionary larger than the input gains nothing, so
// small NARs get small dictionaries.
const (
	xzMinDictCap = 4 << 10
	xzMaxDictCap = 8 << 20
)

// newCompressor is NewCompressor for input of about size bytes (0 if
// unknown).
func newCompressor(method string, level int, size uint64, w io.Writer) (io.WriteCloser, error) {
	switch method {
	case CompressionNone:
		return nopWriteCloser{w}, nil
	case CompressionXZ:
		dictCap := xzMaxDictCap
		if size > 0 {
			dictCap = xzMinDictCap
			for dictCap < xzMaxDictCap && uint64(dictCap) < size {
				dictCap *= 2
			}
		}
		xw, err := xz.WriterConfig{DictCap: dictCap}.NewWriter(w)
		if err != nil {
			return nil, fmt.Errorf("starting xz compression: %w", err)
		}
		return xw, nil
	case CompressionZstd:
		opts := []zstd.EOption{zstd.WithEncoderConcurrency(1)}
		if level != 0 {
			opts = append(opts, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)))
		}
		zw, err := zstd.NewWriter(w, opts...)
		if err != nil {
			return nil, fmt.Errorf("starting zstd compression: %w", err)
		}
		return zw, nil
	}
	if _, err := compressionExtension(method); err == nil {
		return nil, fmt.Errorf("compression '%s' is supported for reading only", method)
	}
	return nil, fmt.Errorf("unknown compression method '%s'", method)
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// zstdReader closes the decoder, which stops its goroutines.
type zstdReader struct{ d *zstd.Decoder }

func (z *zstdReader) Read(p []byte) (int, error) {
	n, err := z.d.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("decompressing zstd: %w", err)
	}
	return n, err
}

func (z *zstdReader) Close() error {
	z.d.Close()
	return nil
}

// lazyReader starts a decompressor on the first Read, since some read
// their stream's header at once, and says which one failed.
type lazyReader struct {
	what string
	open func() (io.Reader, error)
	r    io.Reader
	err  error
}

func (l *lazyReader) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	if l.r == nil {
		r, err := l.open()
		if err != nil {
			l.err = fmt.Errorf("decompressing %s: %w", l.what, err)
			return 0, l.err
		}
		l.r = r
	}
	n, err := l.r.Read(p)
	if err != nil && err != io.EOF {
		l.err = fmt.Errorf("decompressing %s: %w", l.what, err)
		err = l.err
	}
	return n, err
}

func (l *lazyReader) Close() error { return nil }
