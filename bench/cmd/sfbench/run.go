package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// config sizes the run. The full run fits in about 20 minutes on a
// 2-core machine; BENCH_QUICK=1 is a smoke run of the same code.
type config struct {
	Quick             bool `json:"quick"`
	Pairs             int  `json:"pairs"`
	DAGLayers         int  `json:"dagLayers"`
	DAGWidth          int  `json:"dagWidth"`
	ChainLen          int  `json:"chainLength"`
	IncompressibleMiB int  `json:"incompressibleMiB"`
	NARTreeMiB        int  `json:"narTreeMiB"`
	BigFileMiB        int  `json:"bigFileMiB"`
	SmallFiles        int  `json:"smallFiles"`
	Waiters           int  `json:"waiters"`
	Probes            int  `json:"probes"`
	only              map[string]bool

	// Short names for the code.
	pairs, dagLayers, dagWidth, chainLen, incompressibleMiB, narTreeMiB, bigFileMiB, smallFiles, waiters, probes int
}

func loadConfig() (config, error) {
	c := config{Pairs: 7, DAGLayers: 10, DAGWidth: 20, ChainLen: 200, IncompressibleMiB: 100,
		NARTreeMiB: 500, BigFileMiB: 1024, SmallFiles: 100000, Waiters: 1000, Probes: 300}
	if os.Getenv("BENCH_QUICK") == "1" {
		c = config{Quick: true, Pairs: 2, DAGLayers: 5, DAGWidth: 20, ChainLen: 50, IncompressibleMiB: 20,
			NARTreeMiB: 100, BigFileMiB: 128, SmallFiles: 10000, Waiters: 200, Probes: 100}
	}
	if v := os.Getenv("BENCH_PAIRS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return c, fmt.Errorf("BENCH_PAIRS=%q: want a positive number", v)
		}
		c.Pairs = n
	}
	if v := os.Getenv("BENCH_ONLY"); v != "" {
		c.only = map[string]bool{}
		for _, id := range strings.Split(v, ",") {
			c.only[strings.TrimSpace(id)] = true
		}
	}
	c.pairs, c.dagLayers, c.dagWidth, c.chainLen = c.Pairs, c.DAGLayers, c.DAGWidth, c.ChainLen
	c.incompressibleMiB, c.narTreeMiB, c.bigFileMiB, c.smallFiles = c.IncompressibleMiB, c.NARTreeMiB, c.BigFileMiB, c.SmallFiles
	c.waiters, c.probes = c.Waiters, c.Probes
	return c, nil
}

func cmdRun(args []string) error {
	fl := flag.NewFlagSet("run", flag.ExitOnError)
	storefsBin := fl.String("storefs", "bin/storefs", "the storefs binary")
	outDir := fl.String("out", "bench/out", "where results.json, results.md, results.png and logs go")
	fl.Parse(args)
	if os.Geteuid() != 0 {
		return fmt.Errorf("run as root: the sandbox, the mount and drop_caches need it")
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	start := time.Now()
	h := &harness{cfg: cfg}
	if h.storefs, err = filepath.Abs(*storefsBin); err != nil {
		return err
	}
	if h.self, err = os.Executable(); err != nil {
		return err
	}
	if *outDir, err = filepath.Abs(*outDir); err != nil {
		return err
	}
	h.logs = filepath.Join(*outDir, "logs")
	os.RemoveAll(h.logs)
	if err := os.MkdirAll(h.logs, 0o755); err != nil {
		return err
	}
	if h.work = os.Getenv("BENCH_WORK"); h.work == "" {
		if h.work, err = os.MkdirTemp("/var/tmp", "storefs-bench."); err != nil {
			return err
		}
		defer removeTree(h.work)
	} else if err := os.MkdirAll(h.work, 0o755); err != nil {
		return err
	}
	// The sandbox's helper must be able to reach the stores in here.
	if err := os.Chmod(h.work, 0o755); err != nil {
		return err
	}
	// Unmount on SIGINT/SIGTERM before the work directory goes.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		h.mnt.stop()
		removeTree(h.work)
		os.Exit(130)
	}()

	nixStoreBefore, nixBefore := nixSnapshot()
	h.canDrop = dropCaches("3") == nil
	logf("work directory %s; logs in %s; %d pairs%s", h.work, h.logs, cfg.pairs, map[bool]string{true: " (BENCH_QUICK: smaller sizes)"}[cfg.Quick])
	if !h.canDrop {
		logf("warning: cannot write /proc/sys/vm/drop_caches: the cold figures are not cold")
	}

	rep := &report{Config: cfg, Started: start.UTC().Format(time.RFC3339), Host: hostInfo()}
	logf("fixtures: Nix instantiates the derivations, storefs imports them")
	if err := h.prepareFixtures(); err != nil {
		return fmt.Errorf("preparing fixtures: %w", err)
	}
	rep.Host.Nix = h.nix.version
	rep.NixSettings = h.nix.settings
	rep.StorefsSettings = h.sfSettings
	rep.FixtureSeconds = time.Since(start).Seconds()

	done := map[string]error{}
	need := func(name string) error {
		if err, ok := done[name]; ok {
			return err
		}
		t0 := time.Now()
		var err error
		switch name {
		case "cache":
			logf("setup: build the DAG and the chain once, write the zstd cache")
			err = h.prepareCache()
		case "mount":
			logf("setup: add the big file and the small-file tree, mount")
			err = h.mountSetup()
		}
		logf("setup %s: %.1f s", name, time.Since(t0).Seconds())
		done[name] = err
		return err
	}
	for _, w := range h.workloads() {
		if cfg.only != nil && !cfg.only[w.id] {
			continue
		}
		t0 := time.Now()
		var vals [][]float64
		var werr error
		for _, n := range w.needs {
			if werr = need(n); werr != nil {
				werr = fmt.Errorf("setup %s: %w", n, werr)
				break
			}
		}
		if werr == nil && w.setup != nil {
			werr = w.setup()
		}
		k := 0
		if werr == nil && w.warmup {
			_, werr = w.round(k)
			k++
		}
		for i := 0; werr == nil && i < cfg.pairs; i++ {
			var v []float64
			if v, werr = w.round(k); werr == nil {
				vals = append(vals, v)
			}
			k++
		}
		extra := ""
		if w.notes != nil {
			extra = w.notes()
		}
		for _, rs := range w.rows {
			r := makeRow(rs, vals)
			if extra != "" {
				r.Notes = strings.TrimPrefix(strings.Join([]string{r.Notes, extra}, "; "), "; ")
			}
			if werr != nil {
				r.Error = werr.Error()
			}
			rep.Rows = append(rep.Rows, r)
			logf("%-18s %s  (storefs %s, baseline %s)%s", r.ID, formatRatio(r.Ratio), formatValue(r.Storefs.Median, r.Unit),
				formatValue(r.Baseline.Median, r.Unit), map[bool]string{true: "  ERROR: " + firstLine(r.Error)}[r.Error != ""])
		}
		logf("%s: %.1f s", w.id, time.Since(t0).Seconds())
	}
	if err := h.mnt.stop(); err != nil {
		rep.Problems = append(rep.Problems, "stopping the mount: "+err.Error())
	}
	h.mnt = nil

	nixStoreAfter, nixAfter := nixSnapshot()
	rep.MachineNixStore = map[bool]string{true: "exists", false: "absent"}[nixStoreAfter]
	rep.MachineNixUntouched = !nixStoreBefore && !nixStoreAfter && nixBefore == nixAfter
	if !rep.MachineNixUntouched {
		rep.Problems = append(rep.Problems, fmt.Sprintf("the machine's /nix changed during the run (/nix/store before: %v, after: %v)", nixStoreBefore, nixStoreAfter))
	}
	rep.CachesDropped = h.canDrop
	rep.TotalSeconds = time.Since(start).Seconds()
	return rep.write(*outDir)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// makeRow turns the rounds' values into a row: the two medians, and the
// median and range of the per-round ratios.
func makeRow(rs rowSpec, vals [][]float64) row {
	var a, b, ratio []float64
	for _, v := range vals {
		bv := rs.bConst
		if rs.b >= 0 {
			bv = v[rs.b]
		}
		a = append(a, v[rs.a])
		b = append(b, bv)
		if bv > 0 {
			ratio = append(ratio, v[rs.a]/bv)
		} else {
			ratio = append(ratio, math.Inf(1))
		}
	}
	return row{Kind: rs.kind, ID: rs.id, Workload: rs.workload, BaselineName: rs.baseline, Unit: rs.unit, Notes: rs.notes,
		Storefs: newDist(a), Baseline: newDist(b), Ratio: newDist(ratio)}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[bench %s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// hostInfo records what the numbers were measured on.
type host struct {
	Kernel  string `json:"kernel"`
	CPUs    int    `json:"cpus"`
	CPU     string `json:"cpu"`
	MemMiB  int    `json:"memMiB"`
	Storefs string `json:"storefsCommit"`
	Nix     string `json:"nix"`
	Go      string `json:"go"`
}

func hostInfo() host {
	h := host{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		fmt.Sscanf(string(b), "MemTotal: %d kB", &kb)
		h.MemMiB = kb / 1024
	}
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		h.Storefs = strings.TrimSpace(string(out))
		if exec.Command("git", "diff", "--quiet", "HEAD", "--", ".", ":!bench").Run() != nil {
			h.Storefs += "+dirty"
		}
	}
	return h
}
