package sandbox_test

import (
	"context"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"testing"
	"time"
)

// BenchmarkNoopBuild measures sandboxed no-op builds (busybox true) against
// plainly executing the same busybox with os/exec, interleaved so that both
// see the same machine. Each iteration is 200 of each; the metrics are the
// 50th and 95th percentiles in milliseconds (ns/op covers all 400).
//
// A build creates and removes a few directories in Spec.TempDir (the build
// directory, the store directory and its inputs' mount points), so the
// filesystem under it matters: "disk" uses the test's temporary
// directory, "tmpfs" /dev/shm.
func BenchmarkNoopBuild(b *testing.B) {
	b.Run("TempDir=disk", func(b *testing.B) { benchmarkNoopBuild(b, b.TempDir()) })
	b.Run("TempDir=tmpfs", func(b *testing.B) {
		dir, err := os.MkdirTemp("/dev/shm", "storefs-bench-")
		if err != nil {
			b.Skipf("no tmpfs at /dev/shm: %v", err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		benchmarkNoopBuild(b, dir)
	})
}

// BenchmarkNoopBuildBigHeap is BenchmarkNoopBuild (on tmpfs) from a
// process with a 300 MiB heap, touched, as the storefs daemon has with its
// FUSE caches: starting a build must not cost more because the caller is
// big (the kernel copies the page tables of a process that forks).
func BenchmarkNoopBuildBigHeap(b *testing.B) {
	const chunks, chunk = 300, 1 << 20
	heap := make([][]byte, chunks)
	for i := range heap {
		heap[i] = make([]byte, chunk)
		for j := 0; j < chunk; j += 4096 {
			heap[i][j] = 1
		}
	}
	dir, err := os.MkdirTemp("/dev/shm", "storefs-bench-")
	if err != nil {
		dir = b.TempDir()
	} else {
		b.Cleanup(func() { os.RemoveAll(dir) })
	}
	benchmarkNoopBuild(b, dir)
	runtime.KeepAlive(heap)
}

func benchmarkNoopBuild(b *testing.B, tempDir string) {
	const builds = 200
	r := newRunner(b, nil)
	spec := newSpec(b, "")
	spec.Args = []string{"true"}
	spec.TempDir, spec.OutputDir = tempDir, tempDir
	hostBusybox := spec.Inputs[storeDir+"/"+busyboxBase] + "/bin/busybox"
	ctx := context.Background()

	build := func() {
		res, err := r.Run(ctx, spec, io.Discard)
		if err != nil || res.ExitCode != 0 {
			b.Fatalf("Run() = %+v, %v; want exit code 0", res, err)
		}
	}
	plain := func() {
		if err := exec.Command(hostBusybox, "true").Run(); err != nil {
			b.Fatal(err)
		}
	}
	for range 10 { // warm caches
		build()
		plain()
	}

	var sandboxed, baseline []time.Duration
	for b.Loop() {
		sandboxed, baseline = sandboxed[:0], baseline[:0]
		for range builds {
			start := time.Now()
			build()
			sandboxed = append(sandboxed, time.Since(start))
			start = time.Now()
			plain()
			baseline = append(baseline, time.Since(start))
		}
	}
	b.ReportMetric(percentile(sandboxed, 50), "p50-ms")
	b.ReportMetric(percentile(sandboxed, 95), "p95-ms")
	b.ReportMetric(percentile(baseline, 50), "baseline-p50-ms")
	b.ReportMetric(percentile(baseline, 95), "baseline-p95-ms")
}

// percentile returns the p-th percentile of ds in milliseconds.
func percentile(ds []time.Duration, p int) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p+99)/100 - 1
	return float64(s[max(i, 0)]) / float64(time.Millisecond)
}
