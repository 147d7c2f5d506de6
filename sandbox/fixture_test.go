package sandbox_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/storefs/storefs/sandbox"
	"github.com/storefs/storefs/store/nar"
)

// fixtures is ../shared/fixtures of the repository.
const fixtures = "../../shared/fixtures/nix-2.8"

// fixtureCase is the part of expected/<case>.json that a build needs.
type fixtureCase struct {
	Outputs    map[string]string `json:"outputs"`
	Derivation struct {
		Builder string            `json:"builder"`
		Args    []string          `json:"args"`
		Env     map[string]string `json:"env"`
		System  string            `json:"system"`
	} `json:"derivation"`
}

// TestRunner_Run_SandboxCheckFixture runs the sandbox-check case, which
// records what its builder sees (ids, names, /etc, /dev, mounts, pid,
// environment, seccomp and no_new_privs, setuid attempts, network
// interfaces) into its output, and compares that output with the one Nix
// 2.8 built, byte for byte, as NARs.
//
// The fixture's host had /dev/kvm, so Nix bound it and its output lists
// it. On a host without /dev/kvm the expected kvm lines are dropped.
func TestRunner_Run_SandboxCheckFixture(t *testing.T) {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Logf("no /dev/kvm here: expecting the fixture without its kvm lines")
	}
	checkSandboxFixture(t, newRunner(t, &sandbox.Options{KVM: true}))
}

// checkSandboxFixture builds the sandbox-check case with r and compares
// its output with the one Nix 2.8 built.
func checkSandboxFixture(t *testing.T, r *sandbox.Runner) {
	t.Helper()
	var fc fixtureCase
	readJSON(t, filepath.Join(fixtures, "expected", "sandbox-check.json"), &fc)
	out := fc.Outputs["out"]
	want := fixtureNAR(t, out)
	if _, err := os.Stat("/dev/kvm"); err != nil {
		want = withoutKVM(t, want)
	}
	spec := newSpec(t, "")
	spec.Name = "sandbox-check"
	spec.Builder = fc.Derivation.Builder
	spec.Args = fc.Derivation.Args
	spec.Env = fc.Derivation.Env
	spec.System = fc.Derivation.System
	spec.Outputs = []string{out}
	log, res := runBuilderWith(t, r, spec)
	if res.ExitCode != 0 {
		t.Fatalf("builder exit code = %d, want 0; log:\n%s", res.ExitCode, log)
	}
	var got bytes.Buffer
	if err := nar.Dump(&got, filepath.Join(spec.OutputDir, filepath.Base(out))); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		gotFiles, wantFiles := narFiles(t, got.Bytes()), narFiles(t, want)
		for _, name := range unionKeys(gotFiles, wantFiles) {
			if gotFiles[name] != wantFiles[name] {
				t.Errorf("%s:\ngot:\n%s\nwant:\n%s", name, gotFiles[name], wantFiles[name])
			}
		}
		t.Fatalf("output NAR differs from the fixture's")
	}
}

func readJSON(t testing.TB, name string, v any) {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// fixtureNAR returns the NAR of storePath from the fixtures' zstd cache.
func fixtureNAR(t testing.TB, storePath string) []byte {
	t.Helper()
	hash, _, _ := strings.Cut(filepath.Base(storePath), "-")
	cache := filepath.Join(fixtures, "cache-zstd")
	info, err := os.ReadFile(filepath.Join(cache, hash+".narinfo"))
	if err != nil {
		t.Fatal(err)
	}
	var url string
	for _, line := range strings.Split(string(info), "\n") {
		if v, ok := strings.CutPrefix(line, "URL: "); ok {
			url = v
		}
	}
	// The zstd command rather than a Go decoder: linking one into the
	// test binary would slow every sandbox child down (a Go zstd package
	// builds its CRC tables at init, about 0.5 ms per process start here).
	out, err := exec.Command("zstd", "-dc", filepath.Join(cache, url)).Output()
	if err != nil {
		t.Fatalf("decompressing %s with the zstd command: %v", url, err)
	}
	return out
}

// narFiles returns a description of every node of a NAR, by path: the
// contents of regular files, the targets of symlinks.
func narFiles(t testing.TB, data []byte) map[string]string {
	t.Helper()
	files := map[string]string{}
	r := nar.NewReader(bytes.NewReader(data))
	for {
		h, err := r.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		switch h.Type {
		case nar.TypeRegular:
			b, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Path] = fmt.Sprintf("(executable=%v)\n%s", h.Executable, b)
		case nar.TypeSymlink:
			files[h.Path] = "-> " + h.LinkTarget
		default:
			files[h.Path] = "(directory)"
		}
	}
}

// withoutKVM returns the sandbox-check NAR as a host without /dev/kvm
// gives it: without the kvm lines of dev-listing and mountpoints.
func withoutKVM(t testing.TB, data []byte) []byte {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "out")
	if err := nar.Restore(bytes.NewReader(data), dir); err != nil {
		t.Fatal(err)
	}
	for name, line := range map[string]string{"dev-listing": "kvm\n", "mountpoints": "/dev/kvm\n"} {
		p := filepath.Join(dir, name)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, 0o644)
		if err := os.WriteFile(p, bytes.Replace(b, []byte(line), nil, 1), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := nar.Dump(&buf, dir); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func unionKeys(a, b map[string]string) []string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}
