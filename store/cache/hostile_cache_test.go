package cache_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/cache"
	"github.com/storefs/storefs/store/nar/nartest"
	"github.com/storefs/storefs/store/storetest"
)

const (
	redirectA store.Path = "/nix/store/0a3s5ydkdvlz4jdmgfsgm1c4p0d3mk57-redirect-a"
	redirectB store.Path = "/nix/store/0b3s5ydkdvlz4jdmgfsgm1c4p0d3mk57-redirect-b"
)

// signedPair writes A and B (files of different contents) into a new
// file cache, signed, and returns the cache's directory, the key and the
// two narinfos as written.
func signedPair(t *testing.T) (string, cache.PublicKeys, *cache.NARInfo, *cache.NARInfo) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	c := openFileCache(t, dir, &cache.Options{Compression: "zstd"})
	sk, err := cache.GenerateKey("redirect-test-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	var nis []*cache.NARInfo
	for _, p := range []store.Path{redirectA, redirectB} {
		data := nartest.NAR(nartest.File("contents of " + string(p) + "\n"))
		ni := &cache.NARInfo{StorePath: p, NARHash: store.HashBytes(store.SHA256, data), NARSize: uint64(len(data))}
		if err := c.PutNAR(ctx, ni, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		ni.Sign(sk)
		if err := c.PutNARInfo(ctx, ni); err != nil {
			t.Fatal(err)
		}
		nis = append(nis, ni)
	}
	keys, err := cache.ParsePublicKeys([]string{sk.PublicKey().String()})
	if err != nil {
		t.Fatal(err)
	}
	return dir, keys, nis[0], nis[1]
}

// TestFetch_RedirectToOtherPathsNAR: a cache that hands out another
// path's NAR for a path (its narinfo's URL, which no signature covers,
// pointing at it; an HTTP redirect; the narinfo of another path) gets
// nothing registered: the signed NAR hash, the hash part asked for and
// the path asked for are all checked.
func TestFetch_RedirectToOtherPathsNAR(t *testing.T) {
	ctx := context.Background()
	dir, keys, niA, niB := signedPair(t)
	narA, narB := "/"+niA.URL, "/"+niB.URL

	t.Run("NARInfoURL", func(t *testing.T) {
		// The URL is not part of the fingerprint: the narinfo still
		// verifies after the change.
		text := strings.Replace(niA.String(), "URL: "+niA.URL, "URL: "+niB.URL, 1)
		hashPart := redirectA.HashPart()
		if err := os.WriteFile(filepath.Join(dir, hashPart+".narinfo"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.WriteFile(filepath.Join(dir, hashPart+".narinfo"), []byte(niA.String()), 0o644)
		c := cache.NewSignatureCheckingCache(openFileCache(t, dir, nil), keys)
		ni, err := c.NARInfo(ctx, hashPart)
		if err != nil {
			t.Fatalf("NARInfo(A with B's URL) = %v; the signature should still verify", err)
		}
		st := storetest.NewStore(t, nil)
		err = cache.Fetch(ctx, st, c, ni)
		if !errors.Is(err, store.ErrHashMismatch) {
			t.Errorf("Fetch(A with B's NAR) = %v, want a hash mismatch", err)
		}
		checkInvalid(t, st, redirectA)
		checkNoTemporaries(t, st)
	})

	mux := http.NewServeMux()
	files := http.FileServer(http.Dir(dir))
	var answerWithB, redirectNAR atomic.Bool
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		switch {
		case redirectNAR.Load() && r.URL.Path == narA:
			http.Redirect(w, r, narB, http.StatusFound)
		case answerWithB.Load() && r.URL.Path == "/"+redirectA.HashPart()+".narinfo":
			io.WriteString(w, niB.String())
		default:
			files.ServeHTTP(w, r)
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	httpCache := func(t *testing.T) cache.Cache {
		c, err := cache.NewHTTPCache(srv.URL, &cache.Options{DownloadAttempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		return cache.NewSignatureCheckingCache(c, keys)
	}

	t.Run("HTTPRedirect", func(t *testing.T) {
		redirectNAR.Store(true)
		defer redirectNAR.Store(false)
		c := httpCache(t)
		ni, err := c.NARInfo(ctx, redirectA.HashPart())
		if err != nil {
			t.Fatal(err)
		}
		st := storetest.NewStore(t, nil)
		if err := cache.Fetch(ctx, st, c, ni); !errors.Is(err, store.ErrHashMismatch) {
			t.Errorf("Fetch(A redirected to B's NAR) = %v, want a hash mismatch", err)
		}
		checkInvalid(t, st, redirectA)
		checkNoTemporaries(t, st)
	})

	t.Run("NARInfoOfAnotherPath", func(t *testing.T) {
		answerWithB.Store(true)
		defer answerWithB.Store(false)
		c := httpCache(t)
		if ni, err := c.NARInfo(ctx, redirectA.HashPart()); err == nil || !strings.Contains(err.Error(), "narinfo describes '"+string(redirectB)+"'") {
			t.Errorf("NARInfo(A) answered with B's narinfo = %v, %v; want a refusal naming B", ni, err)
		}
		st := storetest.NewStore(t, nil)
		if err := cache.CopyFrom(ctx, st, []cache.Cache{c}, []store.Path{redirectA}, nil); err == nil {
			t.Errorf("CopyFrom(A) answered with B's narinfo = nil, want an error")
		}
		checkInvalid(t, st, redirectA)
		checkInvalid(t, st, redirectB)
		checkNoTemporaries(t, st)
	})

	t.Run("Genuine", func(t *testing.T) {
		st := storetest.NewStore(t, nil)
		if err := cache.CopyFrom(ctx, st, []cache.Cache{httpCache(t)}, []store.Path{redirectA, redirectB}, nil); err != nil {
			t.Fatalf("CopyFrom(A, B) from the honest server = %v", err)
		}
	})
}

// endlessNAR is the start of a NAR of one regular file that declares
// 2^40 bytes; zeros follow for as long as anyone reads.
func endlessNAR() io.Reader {
	var w nartest.Writer
	w.Tokens(nartest.Magic, "(", "type", "regular", "contents").Uint64(1 << 40)
	return io.MultiReader(bytes.NewReader(w.Bytes()), zeros{})
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestFetch_EndlessNAR: a cache that streams a NAR without end (over
// HTTP, uncompressed; and as a zstd bomb that decompresses to far more
// than NarSize) makes Fetch read NarSize+1 bytes, refuse with a size
// mismatch and clean up, in bounded time.
func TestFetch_EndlessNAR(t *testing.T) {
	ctx := context.Background()
	const narSize = 1 << 20
	ni := &cache.NARInfo{StorePath: hostilePath, NARHash: store.HashString(store.SHA256, "x"), NARSize: narSize, URL: "nar/endless.nar", Compression: "none"}

	t.Run("HTTP", func(t *testing.T) {
		var sent atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/"+ni.URL {
				http.NotFound(w, r)
				return
			}
			buf := make([]byte, 64<<10)
			src := endlessNAR()
			for r.Context().Err() == nil {
				n, _ := src.Read(buf)
				if _, err := w.Write(buf[:n]); err != nil {
					return
				}
				if sent.Add(int64(n)) > 1<<30 {
					return // a gigabyte: the client did not stop
				}
			}
		}))
		defer srv.Close()
		c, err := cache.NewHTTPCache(srv.URL, &cache.Options{DownloadAttempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		st := storetest.NewStore(t, nil)
		var read atomic.Int64
		start := time.Now()
		err = cache.Fetch(ctx, st, countingCache{Cache: c, n: &read}, ni)
		if !errors.Is(err, store.ErrHashMismatch) || !strings.Contains(err.Error(), "size mismatch") {
			t.Errorf("Fetch(endless NAR) = %v, want a size mismatch", err)
		}
		if n := read.Load(); n > narSize+1 {
			t.Errorf("Fetch read %d bytes, want at most NarSize+1 = %d", n, narSize+1)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Errorf("Fetch took %v", d)
		}
		t.Logf("server sent %d bytes before the client hung up; Fetch read %d", sent.Load(), read.Load())
		checkInvalid(t, st, hostilePath)
		checkNoTemporaries(t, st)
	})

	t.Run("ZstdBomb", func(t *testing.T) {
		// 256 MiB of NAR in a few kilobytes of zstd.
		var compressed bytes.Buffer
		enc, err := zstd.NewWriter(&compressed)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(enc, io.LimitReader(endlessNAR(), 256<<20)); err != nil {
			t.Fatal(err)
		}
		enc.Close()
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "nar"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "nar", "bomb.nar.zst"), compressed.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		bomb := *ni
		bomb.URL, bomb.Compression = "nar/bomb.nar.zst", "zstd"
		st := storetest.NewStore(t, nil)
		var read atomic.Int64
		err = cache.Fetch(ctx, st, countingCache{Cache: openFileCache(t, dir, nil), n: &read}, &bomb)
		if !errors.Is(err, store.ErrHashMismatch) {
			t.Errorf("Fetch(zstd bomb) = %v, want a size mismatch", err)
		}
		if n := read.Load(); n > narSize+1 {
			t.Errorf("Fetch decompressed %d bytes of a %d-byte file, want at most NarSize+1 = %d", n, compressed.Len(), narSize+1)
		}
		checkInvalid(t, st, hostilePath)
		checkNoTemporaries(t, st)
	})
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory, unmounted
// when the test ends. It skips the test where mounting is not allowed.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size="+strconv.Itoa(size)+",mode=0755"); err != nil {
		if errors.Is(err, unix.EPERM) {
			t.Skipf("mounting a tmpfs needs CAP_SYS_ADMIN: %v", err)
		}
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("umount %s: %v", dir, err)
		}
	})
	return dir
}

// TestFetch_DiskFull: a NAR larger than the space left on the store's
// file system fails with ENOSPC while it is unpacked: nothing is
// registered, the half-written tree is removed (the space comes back),
// the store verifies, and a path that fits substitutes afterwards.
func TestFetch_DiskFull(t *testing.T) {
	ctx := context.Background()
	fsDir := mountTmpfs(t, 8<<20)
	st := storetest.OpenStore(t, filepath.Join(fsDir, "state"), nil)
	var before unix.Statfs_t
	if err := unix.Statfs(fsDir, &before); err != nil {
		t.Fatal(err)
	}

	big := make([]byte, 16<<20)
	rand.Read(big) // incompressible, and more than the file system holds
	data := nartest.NAR(nartest.Dir(nartest.E("big", nartest.File(string(big)))))
	c, ni := cacheWithNAR(t, data, data, nil)
	err := cache.Fetch(ctx, st, c, ni)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Fetch(16 MiB into 8 MiB) = %v, want ENOSPC", err)
	}
	if !strings.Contains(err.Error(), string(hostilePath)) || !strings.Contains(err.Error(), "no space left on device") {
		t.Errorf("Fetch() = %v, want an error naming the path and the full disk", err)
	}
	checkInvalid(t, st, hostilePath)
	checkNoTemporaries(t, st)
	var after unix.Statfs_t
	if err := unix.Statfs(fsDir, &after); err != nil {
		t.Fatal(err)
	}
	if lost := int64(before.Bfree-after.Bfree) * after.Bsize; lost > 1<<20 {
		t.Errorf("%d bytes of the file system are still used after the failure", lost)
	}

	small := nartest.NAR(nartest.File("fits\n"))
	c2, ni2 := cacheWithNAR(t, small, small, nil)
	if err := cache.Fetch(ctx, st, c2, ni2); err != nil {
		t.Fatalf("Fetch(small path) after the full disk = %v", err)
	}
}
