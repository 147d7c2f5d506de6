package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// cmdTimeout bounds every command the harness runs, so that a hung build
// or mount fails its workload instead of the whole run.
const cmdTimeout = 10 * time.Minute

// harness holds what every workload uses: the configuration, the work
// directory and the two stores' tools.
type harness struct {
	cfg     config
	work    string // the work directory (stores, trees, caches, logs)
	logs    string // where each command's stderr goes
	self    string // this binary, for the helper commands
	storefs string // bin/storefs
	nix     *nixPeer
	// sfSettings are storefs's effective settings that matter here.
	sfSettings []string
	fx         *fixtures
	mnt        *mount
	// mountSetup prepares the mount's store and mounts it (mountWorkloads).
	mountSetup func() error
	// canDrop is whether writing /proc/sys/vm/drop_caches works here.
	canDrop bool
	seq     int
}

// runResult is a finished command: its wall time (process start included)
// and its output.
type runResult struct {
	seconds float64
	stdout  []byte
}

// run runs a command with env (nil: ours), timing it from start to exit.
// Its stderr goes to a log file named after label, whose tail is in the
// error when the command fails.
func (h *harness) run(label string, env []string, name string, args ...string) (runResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	h.seq++
	logPath := filepath.Join(h.logs, fmt.Sprintf("%04d-%s.log", h.seq, sanitize(label)))
	logf, err := os.Create(logPath)
	if err != nil {
		return runResult{}, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "$ %s %s\n", name, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout = io.MultiWriter(&out, &prefixWriter{w: logf})
	cmd.Stderr = logf
	// Kill the whole process group on timeout (nix-store's builders too).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	start := time.Now()
	err = cmd.Run()
	el := time.Since(start).Seconds()
	if err != nil {
		logf.Sync()
		return runResult{}, fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, tail(logPath, 15))
	}
	return runResult{seconds: el, stdout: out.Bytes()}, nil
}

// sh runs a shell script, timed like run.
func (h *harness) sh(label, script string) (runResult, error) {
	return h.run(label, nil, "/bin/sh", "-c", script)
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			return r
		}
		return '_'
	}, s)
}

func tail(path string, lines int) string {
	b, _ := os.ReadFile(path)
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// sf runs storefs on the store in state.
func (h *harness) sf(label, state string, args ...string) (runResult, error) {
	return h.run(label, nil, h.storefs, append([]string{"--state-dir", state}, args...)...)
}

// sfOut runs storefs and returns its trimmed stdout.
func (h *harness) sfOut(state string, args ...string) (string, error) {
	r, err := h.sf(args[0], state, args...)
	return strings.TrimSpace(string(r.stdout)), err
}

// dropCaches writes back dirty pages and drops the page cache, dentries
// and inodes (level "3"), or only dentries and inodes ("2").
func dropCaches(level string) error {
	syscall.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte(level), 0)
}

// cold drops the caches before a cold sample, when this machine lets us.
func (h *harness) cold() {
	if h.canDrop {
		dropCaches("3")
	}
}

// copyTree copies a store template (cp -a keeps modes and times), so that
// every sample starts from the same state.
func copyTree(src, dst string) error {
	out, err := exec.Command("cp", "-a", src, dst).CombinedOutput()
	if err != nil {
		return fmt.Errorf("cp -a %s %s: %v: %s", src, dst, err, out)
	}
	return nil
}

// removeTree removes a store (outputs are read-only; as root that is no
// obstacle).
func removeTree(dir string) error {
	err := os.RemoveAll(dir)
	if err != nil {
		// Read-only directories as non-root: make them writable and retry.
		exec.Command("chmod", "-R", "u+w", dir).Run()
		err = os.RemoveAll(dir)
	}
	return err
}

// nixPeer is Nix 2.8 confined to the work directory: a chroot store per
// sample (its logical store directory stays /nix/store) and a temporary
// configuration, state, log, home and cache directory. It never touches
// the machine's /nix.
type nixPeer struct {
	base    string // config, state, home…
	version string
	// settings are the effective settings that matter here, as
	// `nix show-config` reports them.
	settings []string
}

func newNixPeer(base, trustedKey string, maxJobs int) (*nixPeer, error) {
	n := &nixPeer{base: base}
	for _, d := range []string{"conf", "state", "log", "home", "cache"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			return nil, err
		}
	}
	conf := strings.Join([]string{
		"build-users-group =",
		"sandbox = true",
		"sandbox-fallback = false",
		"experimental-features = nix-command",
		"substituters =",
		"require-sigs = true",
		"trusted-public-keys = " + trustedKey,
		fmt.Sprintf("max-jobs = %d", maxJobs),
		"",
	}, "\n")
	if err := os.WriteFile(filepath.Join(base, "conf", "nix.conf"), []byte(conf), 0o644); err != nil {
		return nil, err
	}
	// Not `nix-store --version`: Nix 2.8's legacy commands open the
	// default store even for --version, which creates /nix/store/.links
	// on the machine. `nix --version` does not.
	ver := exec.Command("nix", "--version")
	ver.Env = n.env("")
	out, err := ver.Output()
	if err != nil {
		return nil, fmt.Errorf("nix --version: %w (is nix-bin installed?)", err)
	}
	n.version = strings.TrimSpace(string(out))
	return n, nil
}

// env is Nix's environment; cacheHome is its XDG_CACHE_HOME, where Nix
// keeps its narinfo disk cache: a fresh one per sample, as storefs keeps
// its narinfo cache in its (fresh) database.
func (n *nixPeer) env(cacheHome string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !strings.HasPrefix(k, "NIX_") && k != "HOME" && k != "XDG_CACHE_HOME" {
			env = append(env, kv)
		}
	}
	if cacheHome == "" {
		cacheHome = filepath.Join(n.base, "cache")
	}
	return append(env,
		"NIX_CONF_DIR="+filepath.Join(n.base, "conf"),
		"NIX_STATE_DIR="+filepath.Join(n.base, "state"),
		"NIX_LOG_DIR="+filepath.Join(n.base, "log"),
		"HOME="+filepath.Join(n.base, "home"),
		"XDG_CACHE_HOME="+cacheHome,
	)
}

// nixStore runs nix-store on the chroot store root.
func (h *harness) nixStore(label, root, cacheHome string, args ...string) (runResult, error) {
	return h.run(label, h.nix.env(cacheHome), "nix-store", append([]string{"--store", root}, args...)...)
}

// nixSnapshot describes /nix on the machine: whether /nix/store exists and
// a listing of everything under /nix with modes and times, so that the
// run can show it changed nothing there.
func nixSnapshot() (storeExists bool, listing string) {
	_, err := os.Lstat("/nix/store")
	storeExists = err == nil || !errors.Is(err, os.ErrNotExist)
	var b strings.Builder
	filepath.Walk("/nix", func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			fmt.Fprintf(&b, "%s error %v\n", p, err)
			return nil
		}
		fmt.Fprintf(&b, "%s %v %d %d\n", p, fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		return nil
	})
	return storeExists, b.String()
}

// writeLines writes one string a line.
func writeLines(path string, lines []string) error {
	return os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

// copyFile copies a regular file.
func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// prefixWriter copies a command's stdout into its log, marked "stdout: ".
type prefixWriter struct {
	w       io.Writer
	midLine bool
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if !p.midLine {
			io.WriteString(p.w, "stdout: ")
		}
		p.w.Write(line)
		p.midLine = line[len(line)-1] != '\n'
	}
	return len(b), nil
}
