package cache_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/cache"
	"github.com/storefs/storefs/store/nar"
	"github.com/storefs/storefs/store/nar/nartest"
	"github.com/storefs/storefs/store/storetest"
)

// rawCache serves one NAR, uncompressed, whatever the narinfo asks for;
// it stands for a hostile cache in Fetch's fuzzing. It reads nothing and
// writes nothing.
type rawCache struct {
	cache.Cache
	data []byte
	read *int64
}

func (c rawCache) URL() string { return "fuzz://" }

func (c rawCache) NAR(ctx context.Context, ni *cache.NARInfo) (io.ReadCloser, error) {
	return io.NopCloser(&countingReader{r: bytes.NewReader(c.data), n: c.read}), nil
}

type countingReader struct {
	r io.Reader
	n *int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	*r.n += int64(n)
	return n, err
}

// FuzzFetch substitutes any bytes as a NAR whose narinfo declares their
// hash and a size off by delta (0: the right size). Fetch must either
// register the path with contents that dump to exactly those bytes, or
// fail leaving the path invalid, the temporary area empty and nothing
// written beside it; it never reads more than NarSize+1 bytes.
func FuzzFetch(f *testing.F) {
	for _, tc := range append(nartest.Valid(), nartest.Malicious()...) {
		if len(tc.Data) <= 8<<10 {
			f.Add(tc.Data, int8(0))
		}
	}
	f.Add(nartest.NAR(nartest.File("hello\n")), int8(8))
	f.Add(nartest.NAR(nartest.File("hello\n")), int8(-8))
	st := storetest.NewStore(f, nil)
	escapeAbsExisted := fileExists(nartest.EscapeAbs)
	f.Fuzz(func(t *testing.T, data []byte, delta int8) {
		size := int64(len(data)) + int64(delta)
		if size <= 0 {
			return // a narinfo cannot declare this
		}
		h := store.HashBytes(store.SHA256, data)
		p, err := store.DefaultDir.MakePath("output:out", h, "fuzz")
		if err != nil {
			t.Fatal(err)
		}
		var read int64
		ni := &cache.NARInfo{StorePath: p, URL: "nar/x.nar", Compression: "none", NARHash: h, NARSize: uint64(size)}
		err = cache.Fetch(context.Background(), st, rawCache{data: data, read: &read}, ni)
		if read > size+1 {
			t.Errorf("Fetch read %d bytes of a NAR of declared size %d", read, size)
		}
		if !escapeAbsExisted && fileExists(nartest.EscapeAbs) {
			os.RemoveAll(nartest.EscapeAbs)
			t.Fatalf("Fetch created %s", nartest.EscapeAbs)
		}
		if entries, _ := os.ReadDir(filepath.Dir(st.RealDir())); len(entries) != 2 {
			t.Fatalf("the state directory holds %d entries, want db and store", len(entries))
		}
		if err != nil {
			var fe *nar.FormatError
			// A valid archive can still hold a path too long for the
			// file system under the temporary area: Canonicalise works
			// with path strings (nar.MaxPathLen is relative to the root).
			if delta == 0 && !errors.As(err, &fe) && !errors.Is(err, syscall.ENAMETOOLONG) {
				t.Errorf("Fetch of a NAR with its right size and hash = %v, want a *nar.FormatError", err)
			}
			if delta != 0 && !errors.Is(err, store.ErrHashMismatch) && !errors.As(err, &fe) {
				t.Errorf("Fetch with a wrong NarSize = %v, want a mismatch or a format error", err)
			}
			checkInvalid(t, st, p)
			checkNoTemporaries(t, st)
			return
		}
		if delta != 0 {
			t.Fatalf("Fetch accepted a NAR of %d bytes declared as %d", len(data), size)
		}
		var dumped bytes.Buffer
		if err := nar.Dump(&dumped, st.RealPath(p)); err != nil {
			t.Fatalf("dumping the fetched path: %v", err)
		}
		if !bytes.Equal(dumped.Bytes(), data) {
			t.Fatalf("the fetched path dumps to other bytes than the NAR")
		}
		checkNoTemporaries(t, st)
		if err := st.Delete([]store.Path{p}); err != nil {
			t.Fatalf("Delete(%s) = %v", p, err)
		}
	})
}

func fileExists(name string) bool {
	_, err := os.Lstat(name)
	return err == nil
}
