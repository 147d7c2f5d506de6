package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// row is one figure: storefs against one baseline.
type row struct {
	ID           string `json:"id"`
	Workload     string `json:"workload"`
	BaselineName string `json:"baseline"`
	// Kind is "nix" (the peer), "limit" (what the hardware allows: the
	// backing directory, hashing and decompressing in memory), "self"
	// (storefs reached another way, or idle) or "check" (a count that
	// must equal the baseline).
	Kind     string `json:"kind"`
	Unit     string `json:"unit"`
	Storefs  dist   `json:"storefs"`
	Baseline dist   `json:"baselineValue"`
	// Ratio is storefs over the baseline, per pair (for times, < 1 means
	// storefs was faster).
	Ratio dist   `json:"ratio"`
	Notes string `json:"notes,omitempty"`
	Error string `json:"error,omitempty"`
}

type report struct {
	Started             string   `json:"started"`
	Host                host     `json:"host"`
	Config              config   `json:"config"`
	CachesDropped       bool     `json:"cachesDropped"`
	MachineNixStore     string   `json:"machineNixStore"`
	MachineNixUntouched bool     `json:"machineNixUntouched"`
	FixtureSeconds      float64  `json:"fixtureSeconds"`
	TotalSeconds        float64  `json:"totalSeconds"`
	NixSettings         []string `json:"nixSettings"`
	StorefsSettings     []string `json:"storefsSettings"`
	Rows                []row    `json:"results"`
	Problems            []string `json:"problems,omitempty"`
}

// write prints the table and writes results.json, results.md and the
// chart into dir.
func (rep *report) write(dir string) error {
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	md := rep.markdown()
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Print(md)
	if err := rep.chart(dir); err != nil {
		fmt.Printf("\nno chart: %v\n", err)
	} else {
		fmt.Printf("\nchart: %s\n", filepath.Join(dir, "results.png"))
	}
	fmt.Printf("results: %s\n", filepath.Join(dir, "results.json"))
	for _, r := range rep.Rows {
		if r.Error != "" {
			return fmt.Errorf("some workloads failed (see the table and %s)", filepath.Join(dir, "logs"))
		}
	}
	if len(rep.Problems) > 0 {
		return fmt.Errorf("%s", strings.Join(rep.Problems, "; "))
	}
	return nil
}

func (rep *report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n## storefs benchmarks (%s)\n\n", map[bool]string{true: "BENCH_QUICK smoke run, reduced sizes", false: "full run"}[rep.Config.Quick])
	fmt.Fprintf(&b, "%d pairs per workload, storefs and baseline alternately (A B A B …). Ratio = storefs / baseline per pair: median [min–max];\n", rep.Config.Pairs)
	fmt.Fprintf(&b, "for times, < 1 means storefs is faster. Absolute medians are context only: this machine is noisy.\n\n")
	b.WriteString("| workload | storefs | baseline | baseline median | ratio | notes |\n")
	b.WriteString("| --- | ---: | --- | ---: | --- | --- |\n")
	for _, r := range rep.Rows {
		notes := r.Notes
		if r.Error != "" {
			notes = "**FAILED**: " + strings.ReplaceAll(firstLine(r.Error), "|", "\\|")
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", r.Workload, formatValue(r.Storefs.Median, r.Unit), r.BaselineName,
			formatValue(r.Baseline.Median, r.Unit), formatRatio(r.Ratio), notes)
	}
	fmt.Fprintf(&b, "\nHost: %s, %d CPUs, %d MiB, kernel %s; %s; storefs %s; %s.\n", rep.Host.CPU, rep.Host.CPUs, rep.Host.MemMiB,
		rep.Host.Kernel, rep.Host.Nix, rep.Host.Storefs, rep.Host.Go)
	fmt.Fprintf(&b, "Nix: %s. storefs: %s.\n", strings.Join(rep.NixSettings, ", "), strings.Join(rep.StorefsSettings, ", "))
	fmt.Fprintf(&b, "Cold samples: %s. Machine's /nix/store: %s; /nix untouched: %v.\n",
		map[bool]string{true: "caches dropped (echo 3 > /proc/sys/vm/drop_caches)", false: "NOT cold (drop_caches not writable)"}[rep.CachesDropped],
		rep.MachineNixStore, rep.MachineNixUntouched)
	fmt.Fprintf(&b, "Harness time: %.0f s (fixtures %.0f s).\n", rep.TotalSeconds, rep.FixtureSeconds)
	for _, p := range rep.Problems {
		fmt.Fprintf(&b, "\nPROBLEM: %s\n", p)
	}
	return b.String()
}

// chart draws the ratios with gnuplot (bars: median; whiskers: min–max),
// Nix rows and limit rows in two colours, on a log scale around 1.
func (rep *report) chart(dir string) error {
	gp, err := exec.LookPath("gnuplot")
	if err != nil {
		return fmt.Errorf("gnuplot is not installed (bench/run.sh installs gnuplot-nox)")
	}
	var data strings.Builder
	n := 0
	for _, r := range rep.Rows {
		if r.Kind == "check" || r.Error != "" || r.Ratio.Median <= 0 {
			continue
		}
		col := map[string]int{"nix": 1, "limit": 2, "self": 3}[r.Kind]
		n++
		fmt.Fprintf(&data, "%d \"%s\" %g %g %g %d\n", n, r.ID, r.Ratio.Median, r.Ratio.Min, r.Ratio.Max, col)
	}
	if n == 0 {
		return fmt.Errorf("no ratios to draw")
	}
	datFile := filepath.Join(dir, "chart.dat")
	if err := os.WriteFile(datFile, []byte(data.String()), 0o644); err != nil {
		return err
	}
	script := fmt.Sprintf(`set terminal pngcairo size 1400,720 font "sans,11"
set output %q
set title "storefs time / baseline time, per workload: median of %d pairs, whiskers min-max (below 1: storefs faster)"
set logscale y 2
set ylabel "ratio (log scale)"
set grid ytics
set style fill solid 0.7 border -1
set boxwidth 0.6
set xrange [0.3:%d.7]
set xtics rotate by -30 left nomirror
set key outside top center horizontal
set bmargin 9
plot %q using 1:($6==1?$3:1/0):xtic(2) with boxes lc rgb "#3b75af" title "vs Nix 2.8", \
     %q using 1:($6==2?$3:1/0):xtic(2) with boxes lc rgb "#ef8636" title "vs the limit / the backing directory", \
     %q using 1:($6==3?$3:1/0):xtic(2) with boxes lc rgb "#59a14f" title "vs storefs another way (CLI, idle mount)", \
     %q using 1:3:4:5 with yerrorbars lc rgb "black" pt 0 lw 1.5 notitle, \
     1 with lines dt 2 lc rgb "#cc0000" title "parity"
`, filepath.Join(dir, "results.png"), rep.Config.Pairs, n, datFile, datFile, datFile, datFile)
	gpFile := filepath.Join(dir, "chart.gp")
	if err := os.WriteFile(gpFile, []byte(script), 0o644); err != nil {
		return err
	}
	out, err := exec.Command(gp, gpFile).CombinedOutput()
	if err != nil {
		return fmt.Errorf("gnuplot: %v: %s", err, out)
	}
	return nil
}
