package tests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// drvJSON is a busybox derivation "sh -e -c script" in JSON form, with
// dep0… set to the outputs of deps (given as output paths).
func drvJSON(name, script string, deps map[string]string) string {
	inputDrvs := map[string][]string{}
	env := map[string]string{"name": name}
	i := 0
	for drv, out := range deps {
		inputDrvs[drv] = []string{"out"}
		env[fmt.Sprintf("dep%d", i)] = out
		i++
	}
	b, _ := json.Marshal(map[string]any{
		"name":      name,
		"system":    "x86_64-linux",
		"builder":   busyboxPath + "/bin/busybox",
		"args":      []string{"sh", "-e", "-c", script},
		"inputSrcs": []string{busyboxPath},
		"inputDrvs": inputDrvs,
		"outputs":   map[string]any{"out": map[string]any{}},
		"env":       env,
	})
	return string(b)
}

// addDrv adds a derivation and returns its .drv path and output path.
func (in *instance) addDrv(name, script string, deps map[string]string) (string, string) {
	in.t.Helper()
	r := in.run(drvJSON(name, script, deps), "derivation", "add")
	if r.code != 0 {
		in.t.Fatalf("derivation add %s: %s", name, r.stderr)
	}
	drv := strings.TrimSpace(r.stdout)
	return drv, strings.TrimSpace(in.ok("query", "--outputs", drv))
}

// TestCLI_Realise_ExitCodes: Nix's exit statuses and error output, through
// the binary, for fixture cases.
func TestCLI_Realise_ExitCodes(t *testing.T) {
	in := newInstance(t)
	in.ok("add", busyboxDir(t))
	for _, c := range []string{"fail-exit1", "fod-wrong-hash", "multi-output-cycle", "trivial"} {
		in.ok("derivation", "add", filepath.Join(fixturesDir(t), "drvs", c+".drv"))
	}
	cases := []struct {
		drv    string
		code   int
		stdout string
		stderr []string
	}{
		{"/nix/store/ylidkad964ccmaay0qrd9zdywj84gw6f-trivial.drv", 0, "/nix/store/8z3rv77c71xvmyyijyry9760g7fbghah-trivial\n",
			[]string{"this derivation will be built:\n  /nix/store/ylidkad964ccmaay0qrd9zdywj84gw6f-trivial.drv\n", "building '/nix/store/ylidkad964ccmaay0qrd9zdywj84gw6f-trivial.drv'...\n"}},
		{"/nix/store/8rzax821yydfmljmpnz4s75v1l15qlwn-fail-exit1.drv", 100, "",
			[]string{"error: builder for '/nix/store/8rzax821yydfmljmpnz4s75v1l15qlwn-fail-exit1.drv' failed with exit code 1;\n       last 10 log lines:\n       > stdout line 5\n", "       > about to fail\n       For full logs, run 'storefs log /nix/store/8rzax821yydfmljmpnz4s75v1l15qlwn-fail-exit1.drv'.\n"}},
		{"/nix/store/87an0k1paxqdwwn8rwv34m7jnnv862y2-fod-wrong.txt.drv", 102, "",
			[]string{"error: hash mismatch in fixed-output derivation '/nix/store/87an0k1paxqdwwn8rwv34m7jnnv862y2-fod-wrong.txt.drv':\n         specified: sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n            got:    sha256-hQ1DksDDMhQ9YNWRe2JLu5BFc7TML8+hD1p7P6awDxA=\n"}},
		{"/nix/store/f3n15shm4a8n44h2hmcwiv6bbwvd8jmy-multi-cycle.drv", 1, "",
			[]string{"error: cycle detected in build of '/nix/store/f3n15shm4a8n44h2hmcwiv6bbwvd8jmy-multi-cycle.drv' in the references of output 'dev' from output 'out'\n"}},
	}
	for _, tc := range cases {
		t.Run(filepath.Base(tc.drv), func(t *testing.T) {
			r := in.run("", "realise", tc.drv)
			if r.code != tc.code || r.stdout != tc.stdout {
				t.Errorf("exit %d stdout %q, want %d %q\nstderr:\n%s", r.code, r.stdout, tc.code, tc.stdout, r.stderr)
			}
			for _, want := range tc.stderr {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
				}
			}
			if tc.code != 0 && strings.Count(r.stderr, "error: ") != 1 {
				t.Errorf("the error is printed %d times:\n%s", strings.Count(r.stderr, "error: "), r.stderr)
			}
		})
	}
	// The log of the failed build is kept.
	if got := in.ok("log", "/nix/store/8rzax821yydfmljmpnz4s75v1l15qlwn-fail-exit1.drv"); !strings.HasPrefix(got, "stdout line 1\n") {
		t.Errorf("storefs log = %q", got)
	}
	// --json describes each target.
	var obj map[string]any
	if err := json.Unmarshal([]byte(in.ok("realise", "--json", "/nix/store/ylidkad964ccmaay0qrd9zdywj84gw6f-trivial.drv")), &obj); err != nil {
		t.Fatal(err)
	}
	if obj["status"] != "AlreadyValid" || obj["outputs"].(map[string]any)["out"] != "/nix/store/8z3rv77c71xvmyyijyry9760g7fbghah-trivial" {
		t.Errorf("--json = %v", obj)
	}
}

// TestCLI_Realise_PrintBuildLogs: -L streams the log prefixed by the
// derivation's name, and the error then leaves the tail out.
func TestCLI_Realise_PrintBuildLogs(t *testing.T) {
	in := newInstance(t)
	in.ok("add", busyboxDir(t))
	drv, _ := in.addDrv("chatty", "echo one; echo two; exit 3", nil)
	r := in.run("", "realise", "-L", drv)
	if r.code != 100 || !strings.Contains(r.stderr, "chatty> one\nchatty> two\n") {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "failed with exit code 3\n") || strings.Contains(r.stderr, "last 2 log lines") {
		t.Errorf("with -L the error should have no log tail:\n%s", r.stderr)
	}
}

// TestCLI_Realise_TwoProcesses: two storefs processes realising
// overlapping DAGs: the second waits for the first (saying so) and every
// node is built exactly once.
func TestCLI_Realise_TwoProcesses(t *testing.T) {
	in := newInstance(t)
	in.ok("add", busyboxDir(t))
	var prev map[string]string
	var tops []string
	for l := 0; l < 4; l++ {
		layer := map[string]string{}
		for i := 0; i < 3; i++ {
			drv, out := in.addDrv(fmt.Sprintf("node-%d-%d", l, i), "sleep 0.1; echo x > $out", prev)
			layer[drv] = out
			if l == 3 {
				tops = append(tops, drv)
			}
		}
		prev = layer
	}
	var cmds [2]*exec.Cmd
	var errs [2]bytes.Buffer
	for i := range cmds {
		cmds[i] = exec.Command(storefsBin, "--state-dir", in.state, "realise", tops[i], tops[i+1])
		cmds[i].Stderr = &errs[i]
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range cmds {
		if err := cmds[i].Wait(); err != nil {
			t.Fatalf("realise %d: %v\n%s", i, err, errs[i].String())
		}
	}
	waits := 0
	for i := range errs {
		if strings.Contains(errs[i].String(), "waiting for the store in "+in.state+", held by ") {
			waits++
		}
	}
	if waits != 1 {
		t.Errorf("%d of the two processes said they waited for the other, want 1:\n%s\n---\n%s", waits, errs[0].String(), errs[1].String())
	}
	builds := map[string]int{}
	for i := range errs {
		sc := bufio.NewScanner(&errs[i])
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "building '"); ok {
				builds[strings.TrimSuffix(d, "'...")]++
			}
		}
	}
	if len(builds) != 4*3 {
		t.Errorf("%d derivations built, want 12: %v", len(builds), builds)
	}
	for d, n := range builds {
		if n != 1 {
			t.Errorf("%s built %d times", d, n)
		}
	}
}

// TestCLI_Realise_Interrupt: SIGINT mid-build stops the build, leaves no
// valid output, no temporary directory, no mount and no builder process.
func TestCLI_Realise_Interrupt(t *testing.T) {
	in := newInstance(t)
	in.ok("add", busyboxDir(t))
	drv, out := in.addDrv("sleeper", "echo started; sleep 120; echo > $out", nil)
	cmd := exec.Command(storefsBin, "--state-dir", in.state, "realise", "-L", drv)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "sleeper> started") {
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	go func() {
		for sc.Scan() {
		}
	}()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err == nil {
			t.Errorf("realise exited 0 after SIGINT")
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("realise did not stop after SIGINT")
	}
	if r := in.run("", "path-info", out); r.code == 0 {
		t.Errorf("output %s is valid after an interrupted build", out)
	}
	if entries, _ := os.ReadDir(filepath.Join(in.state, "store", ".tmp")); len(entries) != 0 {
		t.Errorf("temporary area holds %v", entries)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), in.state) {
		t.Errorf("a mount under %s remains", in.state)
	}
	if pids := processesOfBuilds(t); len(pids) != 0 {
		t.Errorf("builder processes remain: %v", pids)
	}
}

// processesOfBuilds lists processes running as a uid of these tests' part
// of the pool (testStartID + k·65536).
func processesOfBuilds(t *testing.T) []string {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join("/proc", e.Name()), &st); err != nil {
			continue
		}
		if st.Uid >= testStartID && st.Uid < testStartID+testIDCount && (st.Uid-testStartID)%65536 == 0 {
			cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			out = append(out, e.Name()+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	return out
}

// TestCLI_Realise_ImpersonateLinux26: the setting reaches the builder,
// which then sees a 2.6 kernel in uname.
func TestCLI_Realise_ImpersonateLinux26(t *testing.T) {
	in := newInstance(t)
	in.ok("add", busyboxDir(t))
	drv, out := in.addDrv("uname", "mkdir $out; uname -r > $out/release", nil)
	in.ok("--option", "impersonate-linux-26", "true", "realise", drv)
	got, err := os.ReadFile(filepath.Join(in.state, "store", filepath.Base(out), "release"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(got), "2.6.") {
		t.Errorf("the builder's uname -r said %q, want a 2.6 kernel", got)
	}
}
