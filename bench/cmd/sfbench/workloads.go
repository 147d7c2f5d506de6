package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// workload is one line (or a few) of the table. round(k) measures every
// variant once, storefs first, in a fixed order, and returns the values;
// k counts rounds from 0, the warm-up included, so that a round can use
// fresh resources (an unbuilt derivation, a store directory).
type workload struct {
	id     string
	needs  []string // "cache", "mount": what setup the workload needs
	warmup bool     // run one round first and discard it
	setup  func() error
	round  func(k int) ([]float64, error)
	rows   []rowSpec
	// notes are added to every row after the run (e.g. a check's result).
	notes func() string
}

// rowSpec says which values of a round make a row: value a over value b,
// or over the constant bConst when b < 0.
type rowSpec struct {
	// kind is "nix" (the peer), "limit" (the hardware, the backing
	// directory), "self" (storefs another way) or "check" (a count).
	kind                                string
	id, workload, baseline, unit, notes string
	a, b                                int
	bConst                              float64
}

// sampleDir is a fresh directory for one sample's store.
func (h *harness) sampleDir(name string, k int) string {
	dir := filepath.Join(h.work, "samples")
	os.MkdirAll(dir, 0o755)
	return filepath.Join(dir, fmt.Sprintf("%s-%d", name, k))
}

// realiseFromTemplate times `storefs realise` and `nix-store --realise` of
// targets, each in a fresh copy of its template store.
func (h *harness) realiseFromTemplate(id string, k, jobs int, targets []string, wantOut string) ([]float64, error) {
	f := h.fx
	sfDir := h.sampleDir(id+"-storefs", k)
	if err := copyTree(f.sfTemplate, sfDir); err != nil {
		return nil, err
	}
	defer removeTree(sfDir)
	a, err := h.sf(id+"-storefs", sfDir, append([]string{"realise", "--max-jobs", strconv.Itoa(jobs)}, targets...)...)
	if err != nil {
		return nil, err
	}
	if !exists(filepath.Join(sfDir, "store", filepath.Base(wantOut))) {
		return nil, fmt.Errorf("storefs realise succeeded but %s is missing", wantOut)
	}
	removeTree(sfDir)

	nixRoot := h.sampleDir(id+"-nix", k)
	if err := copyTree(f.nixTemplate, nixRoot); err != nil {
		return nil, err
	}
	defer removeTree(nixRoot)
	b, err := h.nixStore(id+"-nix", nixRoot, nixRoot+".cache", append([]string{"--realise", "--max-jobs", strconv.Itoa(jobs)}, targets...)...)
	defer removeTree(nixRoot + ".cache")
	if err != nil {
		return nil, err
	}
	if !exists(filepath.Join(nixRoot, wantOut)) {
		return nil, fmt.Errorf("nix-store --realise succeeded but %s is missing", wantOut)
	}
	return []float64{a.seconds, b.seconds}, nil
}

// substitute times substituting paths from the cache into an empty
// storefs store and an empty Nix store.
func (h *harness) substitute(id string, k int, paths []string) ([]float64, error) {
	f := h.fx
	pub, err := os.ReadFile(f.publicKey)
	if err != nil {
		return nil, err
	}
	key := strings.TrimSpace(string(pub))
	sfDir := h.sampleDir(id+"-storefs", k)
	if err := os.MkdirAll(sfDir, 0o755); err != nil {
		return nil, err
	}
	defer removeTree(sfDir)
	a, err := h.sf(id+"-storefs", sfDir, append([]string{
		"--option", "substituters", f.cacheURL(), "--option", "trusted-public-keys", key, "realise"}, paths...)...)
	if err != nil {
		return nil, err
	}
	for _, p := range paths {
		if !exists(filepath.Join(sfDir, "store", filepath.Base(p))) {
			return nil, fmt.Errorf("storefs substituted, but %s is missing", p)
		}
	}
	removeTree(sfDir)

	nixRoot := h.sampleDir(id+"-nix", k)
	if err := os.MkdirAll(nixRoot, 0o755); err != nil {
		return nil, err
	}
	defer removeTree(nixRoot)
	defer removeTree(nixRoot + ".cache")
	b, err := h.nixStore(id+"-nix", nixRoot, nixRoot+".cache", append([]string{
		"--option", "substituters", f.cacheURL(), "--option", "trusted-public-keys", key, "--realise"}, paths...)...)
	if err != nil {
		return nil, err
	}
	for _, p := range paths {
		if !exists(filepath.Join(nixRoot, p)) {
			return nil, fmt.Errorf("nix-store substituted, but %s is missing", p)
		}
	}
	return []float64{a.seconds, b.seconds}, nil
}

func (h *harness) workloads() []*workload {
	c := h.cfg
	nDAG := c.dagLayers * c.dagWidth
	dagTitle := fmt.Sprintf("realise a %d-node DAG (%d layers of %d, 3 deps each) of trivial sandboxed builds, -j%%d, from an empty store", nDAG, c.dagLayers, c.dagWidth)
	nixRealise := "Nix 2.8 `nix-store --realise`, same .drv files"
	var ws []*workload
	for _, jobs := range []int{1, 2} {
		jobs := jobs
		id := fmt.Sprintf("dag-j%d", jobs)
		ws = append(ws, &workload{
			id: id,
			round: func(k int) ([]float64, error) {
				return h.realiseFromTemplate(id, k, jobs, h.fx.dagTop, h.fx.dagOuts[len(h.fx.dagOuts)-1])
			},
			rows: []rowSpec{{kind: "nix", id: id, workload: fmt.Sprintf(dagTitle, jobs), baseline: nixRealise, unit: "s", a: 0, b: 1,
				notes: "fresh copy of a store holding busybox and the .drv files per sample"}},
		})
	}
	ws = append(ws, &workload{
		id: "chain",
		round: func(k int) ([]float64, error) {
			return h.realiseFromTemplate("chain", k, 1, []string{h.fx.chainTop}, h.fx.chainOut)
		},
		rows: []rowSpec{{kind: "nix", id: "chain", workload: fmt.Sprintf("realise a %d-node chain from an empty store", c.chainLen), baseline: nixRealise, unit: "s", a: 0, b: 1}},
	})
	ws = append(ws, &workload{
		id:     "trivial",
		warmup: true,
		round: func(k int) ([]float64, error) {
			return h.realiseFromTemplate("trivial", k, 1, []string{h.fx.trivial}, h.fx.trivialOut)
		},
		rows: []rowSpec{{kind: "nix", id: "trivial", workload: "one trivial build, end to end (process start included)", baseline: nixRealise, unit: "s", a: 0, b: 1}},
	})
	ws = append(ws, &workload{
		id:     "subst-dag",
		needs:  []string{"cache"},
		warmup: true,
		round: func(k int) ([]float64, error) {
			return h.substitute("subst-dag", k, h.fx.dagOuts)
		},
		rows: []rowSpec{{kind: "nix", id: "subst-dag", workload: fmt.Sprintf("substitute the DAG's %d outputs from a local zstd cache into an empty store", nDAG),
			baseline: "Nix 2.8 `nix-store --realise`, same cache", unit: "s", a: 0, b: 1}},
	})
	ws = append(ws, &workload{
		id:     "subst-big",
		needs:  []string{"cache"},
		warmup: true,
		round: func(k int) ([]float64, error) {
			v, err := h.substitute("subst-big", k, []string{h.fx.incompressible})
			if err != nil {
				return nil, err
			}
			r, err := h.run("zstdsha", nil, h.self, "zstdsha", h.fx.incompNAR)
			if err != nil {
				return nil, err
			}
			secs, err := strconv.ParseFloat(strings.Fields(string(r.stdout))[0], 64)
			if err != nil {
				return nil, err
			}
			return append(v, secs), nil
		},
		rows: []rowSpec{
			{kind: "nix", id: "subst-big-nix", workload: fmt.Sprintf("substitute one %d MiB incompressible NAR (zstd)", c.incompressibleMiB),
				baseline: "Nix 2.8 `nix-store --realise`, same cache", unit: "s", a: 0, b: 1},
			{kind: "limit", id: "subst-big-limit", workload: fmt.Sprintf("substitute one %d MiB incompressible NAR (zstd)", c.incompressibleMiB),
				baseline: "limit: zstd decompress + SHA-256 of the same .nar.zst in memory", unit: "s", a: 0, b: 2,
				notes: "limit timed inside its process (no start, no file read); best of 1 and N decoder threads"},
		},
	})
	ws = append(ws, h.narScanWorkload())
	ws = append(ws, h.mountWorkloads()...)
	return ws
}

// narScanWorkload: store.ScanPath (NAR dump + SHA-256 + reference scan)
// of a generated tree against sha256sum of the same bytes.
func (h *harness) narScanWorkload() *workload {
	c := h.cfg
	dir := filepath.Join(h.work, "gen", "nartree")
	refs := filepath.Join(h.work, "gen", "nartree.refs")
	title := fmt.Sprintf("NAR dump + hash + reference scan of a %d MiB tree (warm page cache)", c.narTreeMiB)
	return &workload{
		id:     "narscan",
		warmup: true,
		setup: func() error {
			var bases, parts []string
			for _, p := range h.fx.dagOuts {
				bases = append(bases, filepath.Base(p))
				parts = append(parts, hashPart(p))
			}
			if err := genNARTree(dir, c.narTreeMiB, bases[:len(bases)/2]); err != nil {
				return err
			}
			return writeLines(refs, parts)
		},
		round: func(k int) ([]float64, error) {
			a, err := h.run("narscan", nil, h.self, "narscan", "-refs", refs, dir)
			if err != nil {
				return nil, err
			}
			b, err := h.sh("sha256sum", "find "+dir+" -type f -print0 | xargs -0 sha256sum > /dev/null")
			if err != nil {
				return nil, err
			}
			cc, err := h.run("sha256files", nil, h.self, "sha256files", dir)
			if err != nil {
				return nil, err
			}
			return []float64{a.seconds, b.seconds, cc.seconds}, nil
		},
		rows: []rowSpec{
			{kind: "limit", id: "narscan-sha256sum", workload: title, baseline: "`sha256sum` of the same files (the limit named in the issue)", unit: "s", a: 0, b: 1,
				notes: "storefs = store.ScanPath (as output registration and add use it) in its own process"},
			{kind: "limit", id: "narscan-gosha", workload: title, baseline: "read + SHA-256 (SHA-NI) of the same files, one Go process", unit: "s", a: 0, b: 2,
				notes: "Debian's sha256sum does not use the CPU's SHA extensions; this is the real hashing limit"},
		},
	}
}

// mountWorkloads: the figures that need the mount, all on one mount of
// the prepared store.
func (h *harness) mountWorkloads() []*workload {
	c := h.cfg
	var bigPath, treePath string
	var lookupA, lookupB, stampede []drvOut
	probes := filepath.Join(h.work, "probes")

	// setup adds the big file, the small-file tree and the derivations
	// that lookups build, then mounts.
	h.mountSetup = func() error {
		f := h.fx
		gen := filepath.Join(h.work, "gen")
		big := filepath.Join(gen, "onefile")
		if err := genRandomFile(filepath.Join(big, "data"), int64(c.bigFileMiB)<<20, 1); err != nil {
			return err
		}
		var err error
		if bigPath, err = h.sfOut(f.prepared, "add", big); err != nil {
			return err
		}
		os.RemoveAll(big)
		tree := filepath.Join(gen, "smalltree")
		if err := genSmallTree(tree, c.smallFiles); err != nil {
			return err
		}
		if treePath, err = h.sfOut(f.prepared, "add", tree); err != nil {
			return err
		}
		os.RemoveAll(tree)
		n := c.pairs + 1
		if lookupA, err = h.addJSONDrvs(f.prepared, "lookup-mount", n, "echo $seed > $out"); err != nil {
			return err
		}
		if lookupB, err = h.addJSONDrvs(f.prepared, "lookup-realise", n, "echo $seed > $out"); err != nil {
			return err
		}
		// The stampede's build sleeps 1 s, so that the probes run while
		// every waiter is blocked on it.
		if stampede, err = h.addJSONDrvs(f.prepared, "stampede", n, "sleep 1 && echo $seed > $out"); err != nil {
			return err
		}
		// Probes: valid paths that no sample looks up otherwise.
		entries, err := os.ReadDir(filepath.Join(f.prepared, "store"))
		if err != nil {
			return err
		}
		var names []string
		for _, e := range entries {
			n := e.Name()
			if strings.HasPrefix(n, ".") || strings.HasSuffix(n, ".lock") || n == filepath.Base(bigPath) || n == filepath.Base(treePath) {
				continue
			}
			names = append(names, n)
		}
		rand.New(rand.NewPCG(1, 2)).Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
		if len(names) < c.probes {
			return fmt.Errorf("only %d valid paths to probe, want %d", len(names), c.probes)
		}
		if err := writeLines(probes, names[:c.probes]); err != nil {
			return err
		}
		h.mnt, err = h.startMount(f.prepared, filepath.Join(h.work, "mnt"))
		return err
	}

	readFile := func(name string, path string) (runResult, error) {
		return h.run(name, nil, "dd", "if="+path, "of=/dev/null", "bs=1M")
	}
	read := func(cold bool) func(k int) ([]float64, error) {
		return func(k int) ([]float64, error) {
			m := h.mnt
			if cold {
				h.cold()
			}
			a, err := readFile("read-mount", filepath.Join(m.path(bigPath), "data"))
			if err != nil {
				return nil, err
			}
			if cold {
				h.cold()
			}
			b, err := readFile("read-backing", filepath.Join(m.backing(bigPath), "data"))
			if err != nil {
				return nil, err
			}
			return []float64{a.seconds, b.seconds}, nil
		}
	}
	find := func(cold bool) func(k int) ([]float64, error) {
		return func(k int) ([]float64, error) {
			m := h.mnt
			script := "find %s -printf '%%s %%m %%n\\n' | wc -l"
			if cold {
				h.cold()
			}
			a, err := h.sh("find-mount", fmt.Sprintf(script, m.path(treePath)))
			if err != nil {
				return nil, err
			}
			if cold {
				h.cold()
			}
			b, err := h.sh("find-backing", fmt.Sprintf(script, m.backing(treePath)))
			if err != nil {
				return nil, err
			}
			if na, nb := strings.TrimSpace(string(a.stdout)), strings.TrimSpace(string(b.stdout)); na != nb {
				return nil, fmt.Errorf("find saw %s entries through the mount, %s in the backing directory", na, nb)
			}
			return []float64{a.seconds, b.seconds}, nil
		}
	}
	coldNote := func() string {
		if !h.canDrop {
			return "NOT cold: writing /proc/sys/vm/drop_caches failed here"
		}
		return "page cache, dentries and inodes dropped before each sample"
	}
	fileTitle := fmt.Sprintf("sequential read of a %d MiB file through the mount", c.bigFileMiB)
	treeTitle := fmt.Sprintf("`find` + stat of a %d-file tree through the mount", c.smallFiles)
	var stampedeNote string
	return []*workload{
		{id: "read-cold", needs: []string{"cache", "mount"}, round: read(true), notes: coldNote,
			rows: []rowSpec{{kind: "limit", id: "read-cold", workload: fileTitle + ", cold", baseline: "the backing directory (the limit)", unit: "s", a: 0, b: 1,
				notes: "dd bs=1M"}}},
		{id: "read-warm", needs: []string{"cache", "mount"}, warmup: true, round: read(false),
			rows: []rowSpec{{kind: "limit", id: "read-warm", workload: fileTitle + ", warm", baseline: "the backing directory (the limit)", unit: "s", a: 0, b: 1,
				notes: "dd bs=1M"}}},
		{id: "find-cold", needs: []string{"cache", "mount"}, round: find(true), notes: coldNote,
			rows: []rowSpec{{kind: "limit", id: "find-cold", workload: treeTitle + ", cold", baseline: "the backing directory", unit: "s", a: 0, b: 1,
				notes: "find -printf '%s %m %n' (one lstat per entry)"}}},
		{id: "find-warm", needs: []string{"cache", "mount"}, warmup: true, round: find(false),
			rows: []rowSpec{{kind: "limit", id: "find-warm", workload: treeTitle + ", warm", baseline: "the backing directory", unit: "s", a: 0, b: 1}}},
		{id: "lookup-build", needs: []string{"cache", "mount"}, warmup: true,
			round: func(k int) ([]float64, error) {
				m := h.mnt
				a, err := h.run("lookup-build-stat", nil, "stat", "-c", "%s", m.path(lookupA[k].out))
				if err != nil {
					return nil, err
				}
				b, err := h.sf("lookup-build-realise", m.state, "realise", lookupB[k].drv)
				if err != nil {
					return nil, err
				}
				if got := strings.TrimSpace(string(b.stdout)); got != lookupB[k].out {
					return nil, fmt.Errorf("storefs realise printed %q, want %s", got, lookupB[k].out)
				}
				return []float64{a.seconds, b.seconds}, nil
			},
			rows: []rowSpec{{kind: "self", id: "lookup-build", workload: "lookup-triggered build of a trivial derivation through the mount (`stat` of its output)",
				baseline: "`storefs realise` of a like derivation, run by the same daemon", unit: "s", a: 0, b: 1,
				notes: "a different unbuilt derivation per sample; both include a process start"}}},
		{id: "stampede", needs: []string{"cache", "mount"},
			round: func(k int) ([]float64, error) {
				m := h.mnt
				run := func(label string, target string) (stampedeResult, error) {
					var res stampedeResult
					if h.canDrop {
						dropCaches("2") // forget the probes' entries: each probe is a real lookup
					}
					args := []string{"stampede", "-mnt", m.dir, "-probes", probes, "-count", strconv.Itoa(c.probes), "-n", strconv.Itoa(c.waiters)}
					if target != "" {
						args = append(args, "-target", filepath.Base(target))
					}
					r, err := h.run(label, nil, h.self, args...)
					if err != nil {
						return res, err
					}
					if err := json.Unmarshal(r.stdout, &res); err != nil {
						return res, err
					}
					if res.ProbeErrors > 0 || res.WaiterErrors > 0 {
						return res, fmt.Errorf("%s: %d probe and %d waiter errors, first: %s", label, res.ProbeErrors, res.WaiterErrors, res.FirstError)
					}
					return res, nil
				}
				a, err := run("stampede", stampede[k].out)
				if err != nil {
					return nil, err
				}
				b, err := run("stampede-idle", "")
				if err != nil {
					return nil, err
				}
				builds := m.builds(stampede[k].drv)
				if a.WaitersDone > 0 {
					stampedeNote = fmt.Sprintf("in some sample %d waiters finished before the probes did (build shorter than the probe window)", a.WaitersDone)
				}
				return []float64{a.ProbeP99, b.ProbeP99, float64(builds)}, nil
			},
			rows: []rowSpec{
				{kind: "self", id: "stampede-p99", workload: fmt.Sprintf("%d concurrent `stat`s of one unbuilt path (a 1 s build): p99 latency of %d stats of unrelated valid paths meanwhile", c.waiters, c.probes),
					baseline: "the same stats with the mount idle", unit: "s", a: 0, b: 1,
					notes: "dentries dropped before each sample, so each stat is a FUSE lookup"},
				{kind: "check", id: "stampede-builds", workload: fmt.Sprintf("%d concurrent `stat`s of one unbuilt path: builds started", c.waiters),
					baseline: "must be 1", unit: "builds", a: 2, b: -1, bConst: 1,
					notes: "counted in the daemon's log"},
			},
			notes: func() string { return stampedeNote },
		},
	}
}

// drvOut is a derivation and its output.
type drvOut struct{ drv, out string }

// addJSONDrvs adds n trivial derivations written as JSON (the
// human-friendly input of `storefs derivation add`), each with its own
// seed so that each has an output of its own.
func (h *harness) addJSONDrvs(state, prefix string, n int, script string) ([]drvOut, error) {
	dir := filepath.Join(h.work, "json")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var drvs []string
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%s-%d", prefix, i)
		js, err := json.Marshal(map[string]any{
			"name":      name,
			"system":    "x86_64-linux",
			"builder":   busyboxPath + "/bin/busybox",
			"args":      []string{"sh", "-e", "-c", script},
			"inputSrcs": []string{busyboxPath},
			"inputDrvs": map[string]any{},
			"outputs":   map[string]any{"out": map[string]any{}},
			"env":       map[string]string{"seed": name},
		})
		if err != nil {
			return nil, err
		}
		file := filepath.Join(dir, name+".json")
		if err := os.WriteFile(file, js, 0o644); err != nil {
			return nil, err
		}
		drv, err := h.sfOut(state, "derivation", "add", file)
		if err != nil {
			return nil, err
		}
		drvs = append(drvs, drv)
	}
	show, err := h.sfOut(state, append([]string{"derivation", "show"}, drvs...)...)
	if err != nil {
		return nil, err
	}
	var shown map[string]struct {
		Outputs map[string]struct {
			Path string `json:"path"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal([]byte(show), &shown); err != nil {
		return nil, fmt.Errorf("storefs derivation show: %w", err)
	}
	var ds []drvOut
	for _, d := range drvs {
		out := shown[d].Outputs["out"].Path
		if out == "" {
			return nil, fmt.Errorf("storefs derivation show gave no output path for %s", d)
		}
		ds = append(ds, drvOut{d, out})
	}
	return ds, nil
}
