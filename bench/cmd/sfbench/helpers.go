package main

// The helper commands: each runs as its own process, started by the
// harness, so that it is timed like the storefs and baseline commands
// next to it and so that the harness never touches the FUSE mount itself.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/storefs/storefs/store"
)

// cmdNARScan runs store.ScanPath, the pass that output registration and
// `storefs add` make over a tree: NAR serialisation, SHA-256 and the
// reference scan, all at once. The candidates are read from the file
// given with -refs (one hash part a line).
func cmdNARScan(args []string) error {
	fl := flag.NewFlagSet("narscan", flag.ExitOnError)
	refs := fl.String("refs", "", "file of candidate hash parts, one a line")
	fl.Parse(args)
	if fl.NArg() != 1 {
		return fmt.Errorf("narscan [-refs FILE] DIR")
	}
	var parts []string
	if *refs != "" {
		b, err := os.ReadFile(*refs)
		if err != nil {
			return err
		}
		parts = strings.Fields(string(b))
	}
	r, err := store.ScanPath(fl.Arg(0), parts)
	if err != nil {
		return err
	}
	fmt.Printf("%s %d %d\n", r.NARHash.Base32(), r.NARSize, len(r.Found))
	return nil
}

// cmdSHA256Files reads every regular file under DIR, in lexical order,
// and hashes their concatenation with Go's SHA-256 (which uses the CPU's
// SHA extensions): the same bytes as sha256sum hashes, at the speed this
// CPU can hash them.
func cmdSHA256Files(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("sha256files DIR")
	}
	h := sha256.New()
	buf := make([]byte, 1<<20)
	var n int64
	err := filepath.WalkDir(args[0], func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		m, err := io.CopyBuffer(h, f, buf)
		n += m
		return err
	})
	if err != nil {
		return err
	}
	fmt.Printf("%s %d\n", hex.EncodeToString(h.Sum(nil)), n)
	return nil
}

// cmdZstdSHA reads a .nar.zst file into memory, then times decompressing
// and hashing it there, and prints the seconds: the in-memory limit of a
// substitution. It tries a sequential decoder (as substitution uses) and
// a concurrent one feeding the hash through a pipe, and reports the faster.
func cmdZstdSHA(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("zstdsha FILE")
	}
	data, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	best := time.Duration(1<<63 - 1)
	var sum string
	for _, conc := range []int{1, 0} {
		start := time.Now()
		d, err := zstd.NewReader(bytes.NewReader(data), zstd.WithDecoderConcurrency(conc), zstd.WithDecoderLowmem(false))
		if err != nil {
			return err
		}
		h := sha256.New()
		if _, err := io.Copy(h, d); err != nil {
			return err
		}
		d.Close()
		if el := time.Since(start); el < best {
			best = el
		}
		sum = hex.EncodeToString(h.Sum(nil))
	}
	fmt.Printf("%.6f %s\n", best.Seconds(), sum)
	return nil
}

// stampedeResult is what cmdStampede prints, as JSON.
type stampedeResult struct {
	ProbeP50      float64 `json:"probeP50"`
	ProbeP99      float64 `json:"probeP99"`
	ProbeMax      float64 `json:"probeMax"`
	Probes        int     `json:"probes"`
	ProbeErrors   int     `json:"probeErrors"`
	Waiters       int     `json:"waiters"`
	WaiterErrors  int     `json:"waiterErrors"`
	WaitersDone   int32   `json:"waitersDoneDuringProbe"`
	WaiterSeconds float64 `json:"waiterMaxSeconds"`
	FirstError    string  `json:"firstError,omitempty"`
}

// cmdStampede stats -target under -mnt from -n goroutines at once (one
// unbuilt path: each stat waits for its build), and meanwhile stats the
// valid paths listed in -probes one after the other, timing each: the
// latency that unrelated lookups see while the mount holds the waiters.
// With no -target it only probes (the idle baseline).
func cmdStampede(args []string) error {
	fl := flag.NewFlagSet("stampede", flag.ExitOnError)
	mnt := fl.String("mnt", "", "the mount")
	target := fl.String("target", "", "base name of the unbuilt path")
	n := fl.Int("n", 1000, "concurrent stats of the target")
	probes := fl.String("probes", "", "file of base names of valid paths")
	count := fl.Int("count", 300, "probes to make")
	settle := fl.Duration("settle", 200*time.Millisecond, "wait after starting the waiters before probing")
	fl.Parse(args)
	b, err := os.ReadFile(*probes)
	if err != nil {
		return err
	}
	names := strings.Fields(string(b))
	if len(names) > *count {
		names = names[:*count]
	}
	res := stampedeResult{}
	var wg sync.WaitGroup
	var done atomic.Int32
	var mu sync.Mutex
	var waiterMax time.Duration
	if *target != "" {
		res.Waiters = *n
		start := make(chan struct{})
		var ready sync.WaitGroup
		ready.Add(*n)
		for i := 0; i < *n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ready.Done()
				<-start
				t0 := time.Now()
				_, err := os.Stat(filepath.Join(*mnt, *target))
				el := time.Since(t0)
				done.Add(1)
				mu.Lock()
				defer mu.Unlock()
				if el > waiterMax {
					waiterMax = el
				}
				if err != nil {
					res.WaiterErrors++
					if res.FirstError == "" {
						res.FirstError = err.Error()
					}
				}
			}()
		}
		ready.Wait()
		close(start)
		time.Sleep(*settle)
	}
	lat := make([]float64, 0, len(names))
	for _, name := range names {
		t0 := time.Now()
		_, err := os.Stat(filepath.Join(*mnt, name))
		lat = append(lat, time.Since(t0).Seconds())
		if err != nil {
			res.ProbeErrors++
			if res.FirstError == "" {
				res.FirstError = err.Error()
			}
		}
	}
	res.WaitersDone = done.Load()
	wg.Wait()
	res.WaiterSeconds = waiterMax.Seconds()
	res.Probes = len(lat)
	res.ProbeP50 = percentile(lat, 50)
	res.ProbeP99 = percentile(lat, 99)
	sort.Float64s(lat)
	if len(lat) > 0 {
		res.ProbeMax = lat[len(lat)-1]
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	return json.NewEncoder(w).Encode(res)
}
