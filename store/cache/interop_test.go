package cache_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/cache"
	"github.com/storefs/storefs/store/nar"
	"github.com/storefs/storefs/store/nar/nartest"
)

// nixEnv is a private configuration for running real Nix: its own
// nix.conf, state, log and cache directories, and `store` pointing at a
// chroot store in a temporary directory, so that no command can touch
// the machine's /nix/store even when it opens its default store.
type nixEnv struct {
	t    testing.TB
	env  []string
	root string // the temporary directory
}

func newNixEnv(t testing.TB, extraConf string) *nixEnv {
	t.Helper()
	if _, err := exec.LookPath("nix"); err != nil {
		t.Skip("interop with Nix: nix is not on PATH")
	}
	root := t.TempDir()
	dirs := map[string]string{}
	for _, d := range []string{"conf", "state", "log", "home", "cache", "config", "data", "default-store"} {
		dirs[d] = filepath.Join(root, d)
		if err := os.MkdirAll(dirs[d], 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := "experimental-features = nix-command\n" +
		"sandbox = false\n" +
		"build-users-group =\n" +
		"substituters =\n" +
		"store = " + dirs["default-store"] + "\n" + extraConf
	if err := os.WriteFile(filepath.Join(dirs["conf"], "nix.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return &nixEnv{t: t, root: root, env: []string{
		"PATH=" + os.Getenv("PATH"),
		"NIX_CONF_DIR=" + dirs["conf"],
		"NIX_USER_CONF_FILES=",
		"NIX_STATE_DIR=" + dirs["state"],
		"NIX_LOG_DIR=" + dirs["log"],
		"HOME=" + dirs["home"],
		"XDG_CACHE_HOME=" + dirs["cache"],
		"XDG_CONFIG_HOME=" + dirs["config"],
		"XDG_DATA_HOME=" + dirs["data"],
	}}
}

// run runs a Nix command and returns its stdout and any error with stderr.
func (e *nixEnv) run(args ...string) (string, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = e.env
	cmd.Dir = e.root
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), &nixError{args: args, err: err, stderr: stderr.String()}
	}
	return string(out), nil
}

type nixError struct {
	args   []string
	err    error
	stderr string
}

func (e *nixError) Error() string {
	return strings.Join(e.args, " ") + ": " + e.err.Error() + "\n" + e.stderr
}

// checkNoNixStore fails the test if /nix/store appears during it.
func checkNoNixStore(t testing.TB) {
	t.Helper()
	if _, err := os.Lstat("/nix/store"); err == nil {
		return // there before us: nothing to check
	}
	t.Cleanup(func() {
		if _, err := os.Lstat("/nix/store"); err == nil {
			t.Errorf("/nix/store was created during the test")
		}
	})
}

func TestInterop_NixSubstitutesFromCopyTo(t *testing.T) {
	checkNoNixStore(t)
	ctx := context.Background()
	src, roots, nis := fixtureStore(t)

	// A tree storefs made itself, every node type, and a text referring to it.
	tree := filepath.Join(t.TempDir(), "sample")
	if err := nar.Restore(strings.NewReader(string(nartest.NAR(nartest.Sample()))), tree); err != nil {
		t.Fatal(err)
	}
	own, err := src.AddPath(ctx, tree, "sample")
	if err != nil {
		t.Fatal(err)
	}
	text, err := src.AddText(ctx, "uses-sample", []byte("see "+string(own)+"\n"), []store.Path{own})
	if err != nil {
		t.Fatal(err)
	}
	paths := append(roots, text)

	// A key made by Nix: its format is ours.
	env := newNixEnv(t, "")
	secFile, pubFile := filepath.Join(env.root, "key.sec"), filepath.Join(env.root, "key.pub")
	if _, err := env.run("nix-store", "--generate-binary-cache-key", "storefs-interop-1", secFile, pubFile); err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(pubFile)
	if err != nil {
		t.Fatal(err)
	}

	for _, method := range []string{"zstd", "xz"} {
		t.Run(method, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "cache")
			c, err := cache.Open("file://"+dir+"?compression="+method+"&secret-key="+secFile, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := cache.CopyTo(ctx, src, c, paths, nil); err != nil {
				t.Fatalf("CopyTo() = %v", err)
			}
			closure, err := src.Closure(paths)
			if err != nil {
				t.Fatal(err)
			}
			// nix copy takes a .drv as something to build unless told
			// --derivation, which in turn maps outputs to their .drv: copy
			// the two kinds apart.
			nixCopy := func(env *nixEnv, to string) error {
				var drvs, others []string
				for _, p := range paths {
					if p.IsDerivation() {
						drvs = append(drvs, string(p))
					} else {
						others = append(others, string(p))
					}
				}
				if _, err := env.run(append([]string{"nix", "copy", "--from", "file://" + dir, "--to", to}, others...)...); err != nil {
					return err
				}
				_, err := env.run(append([]string{"nix", "copy", "--derivation", "--from", "file://" + dir, "--to", to}, drvs...)...)
				return err
			}

			// Trusting another key, Nix refuses the input-addressed paths
			// (content-addressed ones need no signature).
			other, err := cache.GenerateKey("other-1", nil)
			if err != nil {
				t.Fatal(err)
			}
			untrusting := newNixEnv(t, "trusted-public-keys = "+other.PublicKey().String()+"\n")
			if err := nixCopy(untrusting, filepath.Join(untrusting.root, "refused")); err == nil || !strings.Contains(err.Error(), "signature") {
				t.Errorf("nix copy without trusting our key = %v, want a refusal for lack of a signature", err)
			}

			trusting := newNixEnv(t, "trusted-public-keys = "+strings.TrimSpace(string(pub))+"\n")
			dst := filepath.Join(trusting.root, "dst")
			if err := nixCopy(trusting, dst); err != nil {
				t.Fatalf("nix copy from our cache: %v", err)
			}
			out, err := trusting.run("nix", "path-info", "--json", "--all", "--store", dst)
			if err != nil {
				t.Fatal(err)
			}
			var infos []struct {
				Path       string   `json:"path"`
				NARHash    string   `json:"narHash"`
				NARSize    uint64   `json:"narSize"`
				References []string `json:"references"`
				Signatures []string `json:"signatures"`
			}
			if err := json.Unmarshal([]byte(out), &infos); err != nil {
				t.Fatalf("nix path-info --json: %v\n%s", err, out)
			}
			if len(infos) != len(closure) {
				t.Fatalf("nix path-info --all lists %d paths, want the %d of the closure", len(infos), len(closure))
			}
			for _, got := range infos {
				want, err := src.PathInfo(store.Path(got.Path))
				if err != nil {
					t.Fatalf("PathInfo(%s) = %v", got.Path, err)
				}
				h, err := store.ParseHash(got.NARHash)
				if err != nil || !h.Equal(want.NARHash) || got.NARSize != want.NARSize {
					t.Errorf("%s: Nix has NAR hash %s (%d bytes), storefs %s (%d bytes)", got.Path, got.NARHash, got.NARSize, want.NARHash, want.NARSize)
				}
				if len(got.References) != len(want.References) {
					t.Errorf("%s: Nix has references %v, storefs %v", got.Path, got.References, want.References)
				}
				if _, ok := nis[store.Path(got.Path)]; !ok && !strings.HasPrefix(strings.Join(got.Signatures, " "), "storefs-interop-1:") {
					t.Errorf("%s: Nix has signatures %v, want ours", got.Path, got.Signatures)
				}
			}
		})
	}
}

func TestInterop_NixSubstitutesFromServer(t *testing.T) {
	checkNoNixStore(t)
	src, roots, _ := fixtureStore(t)
	key, err := cache.GenerateKey("storefs-serve-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	env := newNixEnv(t, "trusted-public-keys = "+key.PublicKey().String()+"\n")
	srv := httptest.NewServer(cache.NewServer(src, &cache.ServerOptions{SecretKey: key}))
	defer srv.Close()
	var outputs []string
	for _, p := range roots {
		if !p.IsDerivation() {
			outputs = append(outputs, string(p))
		}
	}
	dst := filepath.Join(env.root, "dst")
	if _, err := env.run(append([]string{"nix", "copy", "--from", srv.URL, "--to", dst}, outputs...)...); err != nil {
		t.Fatalf("nix copy from the server: %v", err)
	}
	out, err := env.run("nix", "path-info", "--json", "--all", "--store", dst)
	if err != nil {
		t.Fatal(err)
	}
	var infos []struct {
		Path    string `json:"path"`
		NARHash string `json:"narHash"`
	}
	if err := json.Unmarshal([]byte(out), &infos); err != nil {
		t.Fatal(err)
	}
	if len(infos) < len(outputs) {
		t.Fatalf("nix path-info lists %d paths, want at least the %d copied", len(infos), len(outputs))
	}
	for _, got := range infos {
		want, err := src.PathInfo(store.Path(got.Path))
		if err != nil {
			t.Fatal(err)
		}
		if h, err := store.ParseHash(got.NARHash); err != nil || !h.Equal(want.NARHash) {
			t.Errorf("%s: Nix has NAR hash %s, storefs %s", got.Path, got.NARHash, want.NARHash)
		}
	}
}
