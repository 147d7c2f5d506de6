// Package tests holds end-to-end tests of the storefs binary: real
// processes, a real sandbox, real mounts in the tests' own temporary
// directories.
package tests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/storefs/storefs/sandbox"
	"github.com/storefs/storefs/store/storetest"
)

// storefsBin is the binary under test, built once by TestMain.
var storefsBin string

func TestMain(m *testing.M) {
	sandbox.RunChildIfRequested()
	dir, err := os.MkdirTemp("", "storefs-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	storefsBin = filepath.Join(dir, "storefs")
	build := exec.Command("go", "build", "-tags", "urfave_cli_no_docs", "-o", storefsBin, "../cmd/storefs")
	// As `make build` builds it: static, without cli's docs.
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "building storefs: %v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// instance is one store: a state directory (traversable, like
// /nix/var/storefs, so the sandbox helper can reach it) and the logical
// store directory /nix/store, which these tests never touch on the host:
// without a mount, paths live in <state>/store.
type instance struct {
	t     testing.TB
	state string
	env   []string
}

// The builds of these tests use a part of the uid range of their own
// (beyond the default range that the realise tests use, and the part the
// sandbox tests use), so that looking for leftover builder processes
// finds only theirs.
const (
	testStartID = 872415232 + 8388608 + 64*65536
	testIDCount = 32 * 65536
)

func newInstance(t testing.TB) *instance {
	t.Helper()
	state := filepath.Join(t.TempDir(), "state")
	if err := os.MkdirAll(state, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("start-id = %d\nid-count = %d\n", testStartID, testIDCount)
	if err := os.WriteFile(filepath.Join(state, "storefs.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(state), 0o755); err != nil {
		t.Fatal(err)
	}
	return &instance{t: t, state: state, env: os.Environ()}
}

// result is what a storefs process did.
type result struct {
	stdout, stderr string
	code           int
}

// run runs storefs with args (global flags are added) and stdin.
func (in *instance) run(stdin string, args ...string) result {
	in.t.Helper()
	return runStorefs(in.t, in.env, stdin, append([]string{"--state-dir", in.state}, args...)...)
}

// runStorefs runs storefs with exactly args in env, with stdin.
func runStorefs(t testing.TB, env []string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, storefsBin, args...)
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running storefs %v: %v", args, err)
	}
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// ok runs storefs and fails the test unless it exits 0; it returns stdout.
func (in *instance) ok(args ...string) string {
	in.t.Helper()
	r := in.run("", args...)
	if r.code != 0 {
		in.t.Fatalf("storefs %s: exit %d\nstderr:\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// busyboxDir makes a directory holding bin/busybox, which imports as
// Nix's /nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox.
func busyboxDir(t testing.TB) string { return storetest.BusyboxDir(t) }

const busyboxPath = "/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox"

// fixturesDir is ../shared/fixtures/nix-2.8 beside the repository.
func fixturesDir(t testing.TB) string {
	t.Helper()
	d, err := filepath.Abs(filepath.Join("..", "..", "shared", "fixtures", "nix-2.8"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d); err != nil {
		t.Fatalf("Nix fixtures not found: %v", err)
	}
	return d
}
