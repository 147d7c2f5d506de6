package nar_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/storefs/storefs/store/nar"
)

// benchTree writes a tree of about 100 MB like a typical build output under
// b.TempDir(): three big files (60 MiB) and 4000 small ones (40 MB) in 40
// directories. It returns its root and its NAR.
func benchTree(b *testing.B) (root string, data []byte) {
	b.Helper()
	root = filepath.Join(b.TempDir(), "root")
	rng := rand.New(rand.NewChaCha8([32]byte{}))
	content := func(n int) []byte {
		p := make([]byte, n)
		for i := 0; i+8 <= n; i += 8 {
			v := rng.Uint64()
			for j := range 8 {
				p[i+j] = byte(v >> (8 * j))
			}
		}
		return p
	}
	write := func(p string, data []byte, mode os.FileMode) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, data, mode); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 3 {
		write(filepath.Join(root, "lib", fmt.Sprintf("big%d.so", i)), content(20<<20), 0o755)
	}
	for d := range 40 {
		for f := range 100 {
			write(filepath.Join(root, "share", strconv.Itoa(d), strconv.Itoa(f)), content(rng.IntN(20000)), 0o644)
		}
	}
	var buf bytes.Buffer
	if err := nar.Dump(&buf, root); err != nil {
		b.Fatal(err)
	}
	return root, buf.Bytes()
}

func BenchmarkDump(b *testing.B) {
	root, data := benchTree(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := nar.Dump(io.Discard, root); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDumpSHA256 is Dump as the store runs it: into a hash.
func BenchmarkDumpSHA256(b *testing.B) {
	root, data := benchTree(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		h := sha256.New()
		if err := nar.Dump(h, root); err != nil {
			b.Fatal(err)
		}
		h.Sum(nil)
	}
}

// BenchmarkSHA256Baseline hashes the NAR of the tree in memory: Dump is
// not the bottleneck when it is about as fast.
func BenchmarkSHA256Baseline(b *testing.B) {
	_, data := benchTree(b)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		sha256.Sum256(data)
	}
}

func BenchmarkRestore(b *testing.B) {
	_, data := benchTree(b)
	dir := b.TempDir()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		target := filepath.Join(dir, strconv.Itoa(i))
		i++
		if err := nar.Restore(bytes.NewReader(data), target); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := os.RemoveAll(target); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
