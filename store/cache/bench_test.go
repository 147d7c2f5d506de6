package cache_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/cache"
	"github.com/storefs/storefs/store/nar/nartest"
	"github.com/storefs/storefs/store/storetest"
)

// BenchmarkSubstitute measures substitution from a local zstd file
// cache: one 100 MB incompressible NAR (Fetch100MB) next to a baseline of
// decompressing the same bytes from memory and hashing them, with the
// decoder settings Fetch uses (DecompressSHA256), and a closure of 200 small paths (Closure200).
func BenchmarkSubstitute(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	c := openFileCache(b, dir, &cache.Options{Compression: "zstd"})

	data := make([]byte, 100<<20)
	rand.Read(data)
	narData := nartest.NAR(nartest.File(string(data)))
	narHash := store.HashBytes(store.SHA256, narData)
	p, err := store.DefaultDir.MakeFixedOutputPath("incompressible", true, narHash, nil, false)
	if err != nil {
		b.Fatal(err)
	}
	big := &cache.NARInfo{StorePath: p, NARHash: narHash, NARSize: uint64(len(narData)), CA: store.FixedCA(true, narHash)}
	if err := c.PutNAR(ctx, big, bytes.NewReader(narData)); err != nil {
		b.Fatal(err)
	}
	if err := c.PutNARInfo(ctx, big); err != nil {
		b.Fatal(err)
	}
	compressed, err := os.ReadFile(filepath.Join(dir, big.URL))
	if err != nil {
		b.Fatal(err)
	}
	data, narData = nil, nil

	b.Run("DecompressSHA256", func(b *testing.B) {
		b.SetBytes(int64(big.NARSize))
		for b.Loop() {
			d, err := zstd.NewReader(bytes.NewReader(compressed), zstd.WithDecoderConcurrency(1))
			if err != nil {
				b.Fatal(err)
			}
			h := sha256.New()
			if _, err := io.Copy(h, d); err != nil {
				b.Fatal(err)
			}
			d.Close()
		}
	})

	b.Run("Fetch100MB", func(b *testing.B) {
		st := storetest.NewStore(b, nil)
		b.SetBytes(int64(big.NARSize))
		for b.Loop() {
			if err := cache.Fetch(ctx, st, c, big); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := st.Delete([]store.Path{p}); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})

	b.Run("Closure200", func(b *testing.B) {
		const n = 200
		src := storetest.NewStore(b, nil)
		paths := make([]store.Path, n)
		for i := range paths {
			// Path i refers to paths (i-1)/2 and (i-1)/3: a closure about
			// eight levels deep, like a package's dependencies.
			var refs []store.Path
			if i > 0 {
				refs = store.NewPathSet(paths[(i-1)/2], paths[(i-1)/3]).Sorted()
			}
			var text strings.Builder
			fmt.Fprintf(&text, "small path %d\n", i)
			for _, r := range refs {
				fmt.Fprintf(&text, "uses %s\n", r)
			}
			text.WriteString(strings.Repeat("filler line\n", 80))
			paths[i], err = src.AddText(ctx, fmt.Sprintf("small-%d", i), []byte(text.String()), refs)
			if err != nil {
				b.Fatal(err)
			}
		}
		closureCache := openFileCache(b, b.TempDir(), &cache.Options{Compression: "zstd"})
		if err := cache.CopyTo(ctx, src, closureCache, paths, nil); err != nil {
			b.Fatal(err)
		}
		st := storetest.NewStore(b, nil)
		for b.Loop() {
			if err := cache.CopyFrom(ctx, st, []cache.Cache{closureCache}, paths, nil); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			all, err := st.AllValid()
			if err != nil {
				b.Fatal(err)
			}
			if len(all) != n {
				b.Fatalf("%d paths valid after CopyFrom, want %d", len(all), n)
			}
			if err := st.Delete(all); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "paths/s")
	})
}
