package main

// The fixtures: derivations made once by Nix 2.8 and imported into storefs
// (the same .drv files feed both), two store templates that every "from an
// empty store" sample copies, and a signed zstd binary cache.

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// busyboxPath is Debian's static busybox imported as a directory
// bin/busybox named busybox, as builtins.path and `storefs add` both
// make it (the fixtures' builder).
const busyboxPath = "/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox"

// benchNix is the Nix expression of the derivations: a DAG in layers
// (each node depends on three of the previous layer and records their
// paths, so each output refers to its inputs), a chain (each node records
// the previous one), and one trivial derivation. Raw `derivation` only.
const benchNix = `{ bbDir, layers, width, chainLen }:
let
  busybox = builtins.path { name = "busybox"; path = /. + bbDir; };
  mk = name: script: extra: derivation ({
    inherit name;
    system = "x86_64-linux";
    builder = "${busybox}/bin/busybox";
    args = [ "sh" "-e" "-c" script ];
  } // extra);
  mod = a: b: a - (a / b) * b;
  nodeName = l: i: "dag-${toString l}-${toString i}";
  layer = l:
    if l == 0 then
      builtins.genList (i: mk (nodeName 0 i) "echo ${nodeName 0 i} > $out" { }) width
    else
      let prev = layer (l - 1); in
      builtins.genList (i: mk (nodeName l i) "echo ${nodeName l i} > $out && echo $dep0 $dep1 $dep2 >> $out" {
        dep0 = builtins.elemAt prev (mod i width);
        dep1 = builtins.elemAt prev (mod (i + 7) width);
        dep2 = builtins.elemAt prev (mod (i + 13) width);
      }) width;
  chain = i: mk "chain-${toString i}" ''
    echo "chain node ${toString i}" > $out
    if [ -n "$prev" ]; then echo "prev: $prev" >> $out; fi
  '' { prev = if i == 0 then "" else chain (i - 1); };
in {
  dag = layer (layers - 1);
  chain = chain (chainLen - 1);
  trivial = mk "trivial" "echo hello from trivial > $out" { };
}
`

type fixtures struct {
	busyboxDir  string // a directory bin/busybox
	nixTemplate string // a Nix chroot store: busybox and the .drv files
	sfTemplate  string // a storefs state directory: the same
	dagTop      []string
	dagDrvs     []string
	dagOuts     []string
	chainTop    string
	chainOut    string
	trivial     string
	trivialOut  string

	secretKey, publicKey string
	cacheDir             string
	// prepared is a storefs store in which the DAG and the chain are
	// built and the incompressible path is added; the mount uses it.
	prepared       string
	incompressible string // its store path
	incompNAR      string // its .nar.zst in the cache
}

func (f *fixtures) cacheURL() string { return "file://" + f.cacheDir }

// prepareFixtures makes the key, the derivations (with Nix), both store
// templates, the prepared store and the binary cache.
func (h *harness) prepareFixtures() error {
	f := &fixtures{
		busyboxDir:  filepath.Join(h.work, "import", "busybox"),
		nixTemplate: filepath.Join(h.work, "templates", "nix"),
		sfTemplate:  filepath.Join(h.work, "templates", "storefs"),
		secretKey:   filepath.Join(h.work, "cache.sec"),
		publicKey:   filepath.Join(h.work, "cache.pub"),
		cacheDir:    filepath.Join(h.work, "cache"),
		prepared:    filepath.Join(h.work, "prepared"),
	}
	h.fx = f
	if err := os.MkdirAll(filepath.Join(f.busyboxDir, "bin"), 0o755); err != nil {
		return err
	}
	if err := copyFile("/bin/busybox", filepath.Join(f.busyboxDir, "bin", "busybox"), 0o755); err != nil {
		return fmt.Errorf("copying Debian's static busybox (busybox-static): %w", err)
	}
	if _, err := h.run("key-generate", nil, h.storefs, "key", "generate", "bench-cache-1", f.secretKey, f.publicKey); err != nil {
		return err
	}
	pub, err := os.ReadFile(f.publicKey)
	if err != nil {
		return err
	}
	if h.nix, err = newNixPeer(filepath.Join(h.work, "nixpeer"), strings.TrimSpace(string(pub)), 1); err != nil {
		return err
	}

	// Nix's effective settings: the sandbox must be on, for real.
	r, err := h.run("nix-show-config", h.nix.env(""), "nix", "show-config", "--store", f.nixTemplate)
	if err != nil {
		return err
	}
	for _, l := range strings.Split(string(r.stdout), "\n") {
		if k, _, _ := strings.Cut(l, " = "); k == "sandbox" || k == "sandbox-fallback" || k == "store" || k == "build-users-group" || k == "max-jobs" || k == "substituters" || k == "require-sigs" {
			if k == "store" {
				l = "store = <a chroot store under the work directory>"
			}
			h.nix.settings = append(h.nix.settings, strings.TrimSpace(l))
		}
	}
	if !strings.Contains(string(r.stdout), "\nsandbox = true\n") || !strings.Contains(string(r.stdout), "\nsandbox-fallback = false\n") {
		return fmt.Errorf("Nix's sandbox is not on: %v", h.nix.settings)
	}

	// busybox as `nix-store --add` imports it (builtins.path below gives
	// the same path).
	r, err = h.nixStore("nix-store-add-busybox", f.nixTemplate, "", "--add", f.busyboxDir)
	if err != nil {
		return err
	}
	if got := strings.TrimSpace(string(r.stdout)); got != busyboxPath {
		return fmt.Errorf("nix-store --add busybox = %s, want %s", got, busyboxPath)
	}

	// The derivations, instantiated by Nix into its template store.
	expr := filepath.Join(h.work, "bench.nix")
	if err := os.WriteFile(expr, []byte(benchNix), 0o644); err != nil {
		return err
	}
	inst := func(attr string) ([]string, error) {
		r, err := h.run("nix-instantiate-"+attr, h.nix.env(""), "nix-instantiate", "--store", f.nixTemplate, expr, "-A", attr,
			"--argstr", "bbDir", f.busyboxDir,
			"--arg", "layers", strconv.Itoa(h.cfg.dagLayers),
			"--arg", "width", strconv.Itoa(h.cfg.dagWidth),
			"--arg", "chainLen", strconv.Itoa(h.cfg.chainLen))
		return strings.Fields(string(r.stdout)), err
	}
	if f.dagTop, err = inst("dag"); err != nil {
		return err
	}
	chain, err := inst("chain")
	if err != nil {
		return err
	}
	trivial, err := inst("trivial")
	if err != nil {
		return err
	}
	if len(f.dagTop) != h.cfg.dagWidth || len(chain) != 1 || len(trivial) != 1 {
		return fmt.Errorf("nix-instantiate gave %d, %d, %d paths", len(f.dagTop), len(chain), len(trivial))
	}
	f.chainTop, f.trivial = chain[0], trivial[0]
	if _, err := os.Stat(filepath.Join(f.nixTemplate, busyboxPath)); err != nil {
		return fmt.Errorf("builtins.path did not give %s: %w", busyboxPath, err)
	}

	// Every .drv.
	r, err = h.nixStore("nix-query-requisites", f.nixTemplate, "", append([]string{"--query", "--requisites", f.chainTop, f.trivial}, f.dagTop...)...)
	if err != nil {
		return err
	}
	var drvs []string
	for _, p := range strings.Fields(string(r.stdout)) {
		if strings.HasSuffix(p, ".drv") {
			drvs = append(drvs, p)
		}
	}
	outputOf := map[string]string{}
	r, err = h.nixStore("nix-query-outputs", f.nixTemplate, "", append([]string{"--query", "--outputs"}, drvs...)...)
	if err != nil {
		return err
	}
	outs := strings.Fields(string(r.stdout))
	if len(outs) != len(drvs) {
		return fmt.Errorf("nix-store --query --outputs gave %d paths for %d derivations", len(outs), len(drvs))
	}
	for i, d := range drvs {
		outputOf[d] = outs[i]
		if strings.HasPrefix(filepath.Base(d)[33:], "dag-") {
			f.dagDrvs = append(f.dagDrvs, d)
			f.dagOuts = append(f.dagOuts, outs[i])
		}
	}
	f.chainOut, f.trivialOut = outputOf[f.chainTop], outputOf[f.trivial]
	if len(f.dagDrvs) != h.cfg.dagLayers*h.cfg.dagWidth {
		return fmt.Errorf("%d DAG derivations, want %d", len(f.dagDrvs), h.cfg.dagLayers*h.cfg.dagWidth)
	}

	// The storefs template: busybox added as `storefs add` does it, then
	// the .drv files as Nix wrote them, through a signed zstd cache that
	// Nix writes (one storefs process imports them all: 400 separate
	// `storefs derivation add`s take minutes on a loaded machine).
	if err := os.MkdirAll(f.sfTemplate, 0o755); err != nil {
		return err
	}
	// As for Nix: the sandbox on, and no falling back to building
	// without it (storefs's default allows the fallback, Nix's too).
	conf := "sandbox = true\nsandbox-fallback = false\n"
	if err := os.WriteFile(filepath.Join(f.sfTemplate, "storefs.conf"), []byte(conf), 0o644); err != nil {
		return err
	}
	show, err := h.sfOut(f.sfTemplate, "config", "show")
	if err != nil {
		return err
	}
	for _, l := range strings.Split(show, "\n") {
		switch k, _, _ := strings.Cut(l, " = "); k {
		case "sandbox", "sandbox-fallback", "max-jobs", "max-substitution-jobs", "require-sigs", "fsync-metadata", "cores":
			h.sfSettings = append(h.sfSettings, strings.TrimSpace(l))
		}
	}
	got, err := h.sfOut(f.sfTemplate, "add", f.busyboxDir)
	if err != nil {
		return err
	}
	if got != busyboxPath {
		return fmt.Errorf("storefs add busybox = %s, want %s", got, busyboxPath)
	}
	tops := append([]string{f.chainTop, f.trivial}, f.dagTop...)
	drvCache := "file://" + filepath.Join(h.work, "drvcache")
	if _, err := h.run("nix-copy-drvs", h.nix.env(""), "nix", append([]string{"copy", "--derivation", "--store", f.nixTemplate,
		"--to", drvCache + "?compression=zstd&secret-key=" + f.secretKey}, tops...)...); err != nil {
		return err
	}
	if _, err := h.sf("copy-from-drvcache", f.sfTemplate, append([]string{"--option", "trusted-public-keys", strings.TrimSpace(string(pub)),
		"copy", "--from", drvCache}, tops...)...); err != nil {
		return err
	}
	for _, d := range drvs {
		if !exists(filepath.Join(f.sfTemplate, "store", filepath.Base(d))) {
			return fmt.Errorf("%s is missing from the storefs template after copy --from", d)
		}
	}
	// The ATerm route too: storefs must name Nix's .drv files as Nix did.
	for _, d := range []string{f.trivial, f.chainTop, f.dagTop[0]} {
		got, err := h.sfOut(f.sfTemplate, "derivation", "add", filepath.Join(f.nixTemplate, d))
		if err != nil {
			return err
		}
		if got != d {
			return fmt.Errorf("storefs derivation add of Nix's %s gave %s", d, got)
		}
	}
	return nil
}

// prepareCache builds the DAG and the chain in a copy of the storefs
// template, adds the incompressible path, and writes them all to a signed
// zstd file cache.
func (h *harness) prepareCache() error {
	f := h.fx
	if err := copyTree(f.sfTemplate, f.prepared); err != nil {
		return err
	}
	if _, err := h.sf("prepare-realise", f.prepared, append([]string{"realise", "--max-jobs", "2", f.chainTop, f.trivial}, f.dagTop...)...); err != nil {
		return err
	}
	dir := filepath.Join(h.work, "gen", "incompressible")
	if err := genRandomFile(filepath.Join(dir, "data"), int64(h.cfg.incompressibleMiB)<<20, 42); err != nil {
		return err
	}
	var err error
	if f.incompressible, err = h.sfOut(f.prepared, "add", dir); err != nil {
		return err
	}
	os.RemoveAll(dir)
	url := f.cacheURL() + "?compression=zstd&secret-key=" + f.secretKey
	if _, err := h.sf("copy-to-cache", f.prepared, append([]string{"copy", "--to", url, f.incompressible}, f.dagOuts...)...); err != nil {
		return err
	}
	ni, err := readNARInfo(filepath.Join(f.cacheDir, filepath.Base(f.incompressible)[:32]+".narinfo"))
	if err != nil {
		return err
	}
	if ni["Compression"] != "zstd" {
		return fmt.Errorf("the cache's NAR of %s is compressed with %q, want zstd", f.incompressible, ni["Compression"])
	}
	f.incompNAR = filepath.Join(f.cacheDir, ni["URL"])
	return nil
}

// readNARInfo reads a .narinfo's fields.
func readNARInfo(path string) (map[string]string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ": "); ok {
			m[k] = v
		}
	}
	return m, sc.Err()
}

// hashPart is the 32-character hash part of a store path.
func hashPart(p string) string { return filepath.Base(p)[:32] }
