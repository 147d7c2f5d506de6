package store_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/storetest"
)

// BenchmarkScanPath: one pass of NAR dump, SHA-256 and reference scan (what
// every build output gets) over a 200 MB tree of random files, reported in
// MB/s next to plain SHA-256 of the same bytes in memory (the limit),
// measured in the same run.
func BenchmarkScanPath(b *testing.B) {
	dir := b.TempDir()
	rng := rand.New(rand.NewSource(1))
	var all []byte
	for i := 0; i < 200; i++ {
		data := make([]byte, 1<<20)
		rng.Read(data)
		all = append(all, data...)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", i)), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	candidates := make([]string, 50)
	for i := range candidates {
		candidates[i] = store.Base32Encode([]byte(fmt.Sprintf("candidate-%010d!", i)))[:store.HashPartLen]
	}
	var scan, hash time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := store.ScanPath(dir, candidates); err != nil {
			b.Fatal(err)
		}
		scan += time.Since(start)
		start = time.Now()
		sha256.Sum256(all)
		hash += time.Since(start)
	}
	mb := float64(len(all)) / 1e6 * float64(b.N)
	b.ReportMetric(mb/scan.Seconds(), "scan-MB/s")
	b.ReportMetric(mb/hash.Seconds(), "sha256-MB/s")
	b.ReportMetric(scan.Seconds()/hash.Seconds(), "x-sha256")
}

// BenchmarkGC10k: collecting 10,000 dead paths (a chain, so that every
// path has a referrer), reported as seconds per collection.
func BenchmarkGC10k(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		st := storetest.NewStore(b, nil)
		var prev []store.Path
		for i := 0; i < 10000; i++ {
			p, err := st.AddText(context.Background(), fmt.Sprintf("p%d", i), []byte(fmt.Sprintf("%d %v", i, prev)), prev)
			if err != nil {
				b.Fatal(err)
			}
			prev = []store.Path{p}
		}
		b.StartTimer()
		start := time.Now()
		res, err := st.GC(context.Background(), nil)
		if err != nil || len(res.Deleted) != 10000 {
			b.Fatalf("GC = %d deleted, %v", len(res.Deleted), err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "s/gc")
	}
}
