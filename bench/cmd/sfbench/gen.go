package main

// Deterministic test data: the same seed gives the same bytes on every
// machine, so that store paths and hashes are stable between runs.

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

// genRandomFile writes size bytes of pseudo-random (incompressible) data.
func genRandomFile(path string, size int64, seed uint64) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	var key [32]byte
	for i := range key {
		key[i] = byte(seed >> (8 * (i % 8)))
	}
	rng := rand.NewChaCha8(key)
	buf := make([]byte, 1<<20)
	for size > 0 {
		n := int64(len(buf))
		if size < n {
			n = size
		}
		rng.Read(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			f.Close()
			return err
		}
		size -= n
	}
	return f.Close()
}

// genNARTree makes a tree of about totalMiB: four large random files
// (80%, like binaries and archives) and 20 KiB text files (20%) whose
// lines mention some of refs as store paths, so that the reference
// scanner has both long runs of base-32 digits and real hits.
func genNARTree(dir string, totalMiB int, refs []string) error {
	total := int64(totalMiB) << 20
	big := total * 8 / 10 / 4
	for i := 0; i < 4; i++ {
		if err := genRandomFile(filepath.Join(dir, "blobs", fmt.Sprintf("blob%d", i)), big, uint64(100+i)); err != nil {
			return err
		}
	}
	rng := rand.New(rand.NewPCG(7, 7))
	words := strings.Fields("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore magna aliqua 0 1 2 3 4 5 6 7 8 9 include define return static const void int char")
	const fileSize = 20 << 10
	nFiles := int(total / 5 / fileSize)
	for i := 0; i < nFiles; i++ {
		p := filepath.Join(dir, "src", fmt.Sprintf("d%02d", i%50), fmt.Sprintf("file%05d.c", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		var b strings.Builder
		for b.Len() < fileSize {
			if len(refs) > 0 && rng.IntN(40) == 0 {
				fmt.Fprintf(&b, "#include \"/nix/store/%s/include/x.h\"\n", refs[rng.IntN(len(refs))])
				continue
			}
			for w := 0; w < 10; w++ {
				b.WriteString(words[rng.IntN(len(words))])
				b.WriteByte(' ')
			}
			b.WriteByte('\n')
		}
		if err := os.WriteFile(p, []byte(b.String()[:fileSize]), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// genSmallTree makes n small files, 1,000 to a directory.
func genSmallTree(dir string, n int) error {
	for i := 0; i < n; i++ {
		d := filepath.Join(dir, fmt.Sprintf("d%03d", i/1000))
		if i%1000 == 0 {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		f, err := os.Create(filepath.Join(d, fmt.Sprintf("f%05d", i)))
		if err != nil {
			return err
		}
		w := bufio.NewWriter(f)
		fmt.Fprintf(w, "small file %d\n", i)
		w.Flush()
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}
