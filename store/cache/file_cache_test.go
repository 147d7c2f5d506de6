package cache_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/cache"
	"github.com/storefs/storefs/store/nar/nartest"
)

func TestFileCache_NARInfo(t *testing.T) {
	ctx := context.Background()
	c := openFileCache(t, fixtureCacheDir(t, "cache-xz"), nil)
	t.Run("Found", func(t *testing.T) {
		ni, err := c.NARInfo(ctx, "023z915q4il2a1ignka406l584flfff7")
		if err != nil || ni.StorePath != "/nix/store/023z915q4il2a1ignka406l584flfff7-chain-20" {
			t.Errorf("NARInfo() = %v, %v", ni, err)
		}
	})
	t.Run("NotFound", func(t *testing.T) {
		_, err := c.NARInfo(ctx, "00000000000000000000000000000000")
		if !errors.Is(err, cache.ErrNotFound) {
			t.Errorf("NARInfo() = %v, want ErrNotFound", err)
		}
	})
	t.Run("NotAHashPart", func(t *testing.T) {
		for _, h := range []string{"", "../nix-cache-info", "023z915q4il2a1ignka406l584flfff", "023z915q4il2a1ignka406l584flfffe"} {
			if _, err := c.NARInfo(ctx, h); err == nil || errors.Is(err, cache.ErrNotFound) {
				t.Errorf("NARInfo(%q) = %v, want an error other than ErrNotFound", h, err)
			}
		}
	})
	t.Run("OtherPath", func(t *testing.T) {
		// A narinfo filed under the wrong hash part is not believed.
		dir := t.TempDir()
		data, err := os.ReadFile(filepath.Join(fixtureCacheDir(t, "cache-xz"), "023z915q4il2a1ignka406l584flfff7.narinfo"))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "5q7fqmvwy98765w5xh3gj3425fy94zpr.narinfo"), data, 0o644)
		_, err = openFileCache(t, dir, nil).NARInfo(ctx, "5q7fqmvwy98765w5xh3gj3425fy94zpr")
		if err == nil || !strings.Contains(err.Error(), "not a path with hash part") {
			t.Errorf("NARInfo() = %v, want a refusal", err)
		}
	})
	t.Run("Malformed", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "5q7fqmvwy98765w5xh3gj3425fy94zpr.narinfo"), []byte("StorePath: x\n"), 0o644)
		_, err := openFileCache(t, dir, nil).NARInfo(ctx, "5q7fqmvwy98765w5xh3gj3425fy94zpr")
		if err == nil || !strings.Contains(err.Error(), "file://"+dir) || !strings.Contains(err.Error(), "5q7fqmvwy98765w5xh3gj3425fy94zpr.narinfo") {
			t.Errorf("NARInfo() = %v, want an error naming the cache and the file", err)
		}
	})
}

func TestFileCache_NAR(t *testing.T) {
	ctx := context.Background()
	for _, name := range fixtureCaches {
		t.Run(name, func(t *testing.T) {
			c := openFileCache(t, fixtureCacheDir(t, name), nil)
			ni, err := c.NARInfo(ctx, "02dvcx263lli0cq4121jfdf90jp2iv0h")
			if err != nil {
				t.Fatal(err)
			}
			r, err := c.NAR(ctx, ni)
			if err != nil {
				t.Fatalf("NAR() = %v", err)
			}
			defer r.Close()
			h := sha256.New()
			n, err := io.Copy(h, r)
			if err != nil {
				t.Fatalf("reading NAR = %v", err)
			}
			got := store.Hash{Algo: store.SHA256, Digest: h.Sum(nil)}
			if uint64(n) != ni.NARSize || !got.Equal(ni.NARHash) {
				t.Errorf("NAR() gave %d bytes with hash %s, want %d and %s", n, got, ni.NARSize, ni.NARHash)
			}
		})
	}
}

func TestFileCache_NAR_HostileURL(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(filepath.Dir(dir), "secret"), []byte("x"), 0o644)
	c := openFileCache(t, dir, nil)
	for _, u := range []string{"../secret", "/etc/passwd", "nar/../../secret", "nar//x", "./nar/x", "file:///etc/passwd", "nar/x?y", ""} {
		ni := &cache.NARInfo{StorePath: "/nix/store/023z915q4il2a1ignka406l584flfff7-chain-20", URL: u, Compression: "none"}
		if r, err := c.NAR(context.Background(), ni); err == nil || errors.Is(err, cache.ErrNotFound) {
			if r != nil {
				r.Close()
			}
			t.Errorf("NAR(URL %q) = %v, want a refusal", u, err)
		}
	}
}

func TestFileCache_Put(t *testing.T) {
	ctx := context.Background()
	data := nartest.NAR(nartest.Sample())
	for _, method := range []string{"none", "xz", "zstd"} {
		t.Run(method, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "cache")
			c := openFileCache(t, dir, &cache.Options{Compression: method})
			narHash := store.HashBytes(store.SHA256, data)
			ni := &cache.NARInfo{StorePath: "/nix/store/023z915q4il2a1ignka406l584flfff7-sample", NARHash: narHash, NARSize: uint64(len(data))}
			if err := c.PutNAR(ctx, ni, bytes.NewReader(data)); err != nil {
				t.Fatalf("PutNAR() = %v", err)
			}
			compressed, err := os.ReadFile(filepath.Join(dir, ni.URL))
			if err != nil {
				t.Fatal(err)
			}
			ext := map[string]string{"none": "", "xz": ".xz", "zstd": ".zst"}[method]
			if want := "nar/" + store.HashBytes(store.SHA256, compressed).Base32() + ".nar" + ext; ni.URL != want {
				t.Errorf("URL = %s, want %s", ni.URL, want)
			}
			if !ni.FileHash.Equal(store.HashBytes(store.SHA256, compressed)) || ni.FileSize != uint64(len(compressed)) || ni.Compression != method {
				t.Errorf("FileHash, FileSize, Compression = %s, %d, %s; want those of the %d bytes written with %s", ni.FileHash, ni.FileSize, ni.Compression, len(compressed), method)
			}
			if err := c.PutNARInfo(ctx, ni); err != nil {
				t.Fatalf("PutNARInfo() = %v", err)
			}
			back, err := c.NARInfo(ctx, "023z915q4il2a1ignka406l584flfff7")
			if err != nil || back.String() != ni.String() {
				t.Fatalf("NARInfo() = %v, %v; want what was put:\n%s", back, err, ni)
			}
			r, err := c.NAR(ctx, back)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("NAR() = %d bytes, %v; want the %d put", len(got), err, len(data))
			}
		})
	}
}

func TestFileCache_PutNAR_ReaderFails(t *testing.T) {
	dir := t.TempDir()
	c := openFileCache(t, dir, &cache.Options{Compression: "zstd"})
	ni := &cache.NARInfo{StorePath: "/nix/store/023z915q4il2a1ignka406l584flfff7-sample"}
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("some data"), &failingReader{err: boom})
	if err := c.PutNAR(context.Background(), ni, r); !errors.Is(err, boom) {
		t.Errorf("PutNAR() = %v, want the reader's error", err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "nar"))
	for _, e := range entries {
		t.Errorf("%s left in nar/ after a failed PutNAR", e.Name())
	}
	if ni.URL != "" {
		t.Errorf("URL = %s after a failed PutNAR, want none", ni.URL)
	}
}

func TestFileCache_PutNARInfo_Incomplete(t *testing.T) {
	c := openFileCache(t, t.TempDir(), nil)
	ni := &cache.NARInfo{StorePath: "/nix/store/023z915q4il2a1ignka406l584flfff7-sample", URL: "nar/x.nar", Compression: "none"}
	if err := c.PutNARInfo(context.Background(), ni); err == nil {
		t.Errorf("PutNARInfo(no NAR hash) = nil, want an error")
	}
}

type failingReader struct{ err error }

func (r *failingReader) Read([]byte) (int, error) { return 0, r.err }
