package realise_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/storefs/storefs/realise"
	"github.com/storefs/storefs/sandbox"
	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/storetest"
)

// BenchmarkRealiseDAG realises a 200-node DAG of trivial sandboxed builds
// (10 layers of 20, each node depending on 3 of the previous layer) with
// one and two jobs, and reports ms per derivation next to the cost of a
// sandboxed no-op build measured in the same run (the floor for the
// worker's overhead). Nix 2.8 took about 22 ms per derivation here.
func BenchmarkRealiseDAG(b *testing.B) {
	for _, jobs := range []int{1, 2} {
		b.Run(fmt.Sprintf("j%d", jobs), func(b *testing.B) {
			e := newEnv(b, &realise.Options{MaxJobs: jobs})
			floor := noopBuildCost(b, e.st)
			var total time.Duration
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				dag := addDAG(b, e.st, fmt.Sprintf("bench%d", i), 10, 20)
				b.StartTimer()
				start := time.Now()
				rep, err := e.w.Realise(context.Background(), realise.Request{Targets: targetsOf(dag[9]...)})
				total += time.Since(start)
				if err != nil || rep.Failed() {
					b.Fatalf("DAG failed: %v %+v", err, rep)
				}
			}
			perDrv := float64(total.Microseconds()) / 1000 / float64(b.N) / 200
			b.ReportMetric(perDrv, "ms/drv")
			b.ReportMetric(floor, "noop-ms")
			b.ReportMetric(perDrv/floor, "x-noop")
		})
	}
}

// noopBuildCost is the median time of a sandboxed `busybox true` in ms.
func noopBuildCost(b *testing.B, st *store.Store) float64 {
	b.Helper()
	runner, err := sandbox.New(nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { runner.Close() })
	bb := storetest.BusyboxPath
	var times []time.Duration
	for i := 0; i < 50; i++ {
		tmp, err := st.MkdirTemp("noop-")
		if err != nil {
			b.Fatal(err)
		}
		os.Chmod(tmp, 0o711)
		out := filepath.Join(tmp, "out")
		os.Mkdir(out, 0o755)
		start := time.Now()
		_, err = runner.Run(context.Background(), &sandbox.Spec{
			StoreDir: string(st.Dir), TempDir: tmp, Name: "noop",
			Builder: bb + "/bin/busybox", Args: []string{"true"},
			Inputs: map[string]string{bb: st.RealPath(store.Path(bb))}, OutputDir: out, Cores: 1,
		}, discard{})
		times = append(times, time.Since(start))
		os.RemoveAll(tmp)
		if err != nil {
			b.Fatal(err)
		}
	}
	return float64(median(times).Microseconds()) / 1000
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}
