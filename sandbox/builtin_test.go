//go:build linux

package sandbox_test

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/ulikunitz/xz"

	"github.com/storefs/storefs/sandbox"
	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/nar"
)

// newBuiltinSpec returns a Spec for the builtin builder name with the
// derivation attributes env (and out), producing outPath.
func newBuiltinSpec(t testing.TB, name string, env map[string]string) *sandbox.Spec {
	t.Helper()
	e := map[string]string{"out": outPath}
	for k, v := range env {
		e[k] = v
	}
	return &sandbox.Spec{
		StoreDir:  storeDir,
		TempDir:   t.TempDir(),
		Name:      "test",
		Builder:   "builtin:" + name,
		Env:       e,
		Outputs:   []string{outPath},
		OutputDir: t.TempDir(),
		Cores:     1,
	}
}

// narOf returns the NAR of a tree made from files (path → contents; a
// path ending in "*" is executable, without the star).
func narOf(t testing.TB, files map[string]string) []byte {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tree")
	for name, data := range files {
		perm := os.FileMode(0o644)
		if n, ok := strings.CutSuffix(name, "*"); ok {
			name, perm = n, 0o755
		}
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), perm); err != nil {
			t.Fatal(err)
		}
	}
	var b bytes.Buffer
	if err := nar.Dump(&b, dir); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func xzOf(t testing.TB, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := xz.NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestRunner_Run_BuiltinFetchurl downloads from a server on the host's
// loopback, which a fixed-output build reaches, and from a file:// path
// bound into the sandbox.
func TestRunner_Run_BuiltinFetchurl(t *testing.T) {
	const hello = "hello\n"
	helloHash := store.HashString(store.SHA256, hello)
	narData := narOf(t, map[string]string{"bin/tool*": "#!/bin/sh\n", "share/doc": "doc\n"})
	var flaky atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(hello)) })
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/hello", http.StatusFound) })
	mux.HandleFunc("/auth", func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "alice" || p != "s3cret" {
			http.Error(w, "who are you?", http.StatusUnauthorized)
			return
		}
		w.Write([]byte(hello))
	})
	mux.HandleFunc("/flaky", func(w http.ResponseWriter, r *http.Request) {
		if flaky.Add(1) == 1 {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(hello))
	})
	mux.HandleFunc("/unavailable", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("/mirror/sha256/"+helloHash.Base16(), func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(hello)) })
	mux.HandleFunc("/tree.nar", func(w http.ResponseWriter, r *http.Request) { w.Write(narData) })
	mux.HandleFunc("/tree.nar.xz", func(w http.ResponseWriter, r *http.Request) { w.Write(xzOf(t, narData)) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	tlsSrv := httptest.NewUnstartedServer(mux)
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // the UnknownAuthority case's handshake error
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw})

	files := t.TempDir()
	if err := os.Chmod(files, 0o755); err != nil { // the build user reads it
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(files, "hello"), []byte(hello), 0o644); err != nil {
		t.Fatal(err)
	}

	const treeListing = ". 755/\nbin 755/\nbin/tool 755 #!/bin/sh\nshare 755/\nshare/doc 644 doc\n"
	flat := func(url string) map[string]string {
		return map[string]string{"url": url, "outputHashMode": "flat", "outputHashAlgo": "sha256", "outputHash": helloHash.Base32()}
	}
	recursive := func(env map[string]string) map[string]string {
		env["outputHashMode"] = "recursive"
		return env
	}
	for _, tc := range []struct {
		name   string
		env    map[string]string
		modify func(*sandbox.Spec)
		// want is the output's listing (see listOutput); wantLog, if
		// set, must appear in the log and the builder must fail with
		// exit code 1. wantRetry: the log has a retry warning.
		want      string
		wantLog   string
		wantRetry bool
	}{
		{name: "HTTP", env: flat(srv.URL + "/hello"), want: ". 644 hello\n"},
		{name: "Redirect", env: flat(srv.URL + "/redirect"), want: ". 644 hello\n"},
		{name: "HTTPS", env: flat(tlsSrv.URL + "/hello"), modify: func(s *sandbox.Spec) { s.CACerts = caPEM }, want: ". 644 hello\n"},
		{name: "File", env: flat("file:///srv/files/hello"), modify: func(s *sandbox.Spec) {
			s.SandboxPaths = []sandbox.BindPath{{Target: "/srv/files", Source: files}}
		}, want: ". 644 hello\n"},
		{name: "URLs", env: map[string]string{"urls": srv.URL + "/missing " + srv.URL + "/hello"}, want: ". 644 hello\n"},
		{name: "Netrc", env: flat(srv.URL + "/auth"), modify: func(s *sandbox.Spec) {
			s.Netrc = []byte("machine 127.0.0.1 login alice password s3cret\n")
		}, want: ". 644 hello\n"},
		{name: "HashedMirror", env: flat(srv.URL + "/missing"), modify: func(s *sandbox.Spec) {
			s.HashedMirrors = []string{srv.URL + "/nothing-here", srv.URL + "/mirror"}
		}, want: ". 644 hello\n"},
		{name: "Retry", env: flat(srv.URL + "/flaky"), modify: func(s *sandbox.Spec) { s.DownloadAttempts = 2 },
			want: ". 644 hello\n", wantRetry: true},
		{name: "Unpack", env: recursive(map[string]string{"url": srv.URL + "/tree.nar", "unpack": "1"}), want: treeListing},
		{name: "UnpackXZ", env: recursive(map[string]string{"url": srv.URL + "/tree.nar.xz", "unpack": "1"}), want: treeListing},
		{name: "Executable", env: recursive(map[string]string{"url": srv.URL + "/hello", "executable": "1"}), want: ". 755 hello\n"},

		{name: "NotFound", env: flat(srv.URL + "/missing"),
			wantLog: "error: unable to download '" + srv.URL + "/missing': HTTP error 404\n\nresponse body:\n\n404 page not found\n"},
		{name: "NoCredentials", env: flat(srv.URL + "/auth"),
			wantLog: "error: unable to download '" + srv.URL + "/auth': HTTP error 401\n\nresponse body:\n\nwho are you?\n"},
		{name: "RetriesExhausted", env: flat(srv.URL + "/unavailable"), modify: func(s *sandbox.Spec) { s.DownloadAttempts = 2 },
			wantLog: "error: unable to download '" + srv.URL + "/unavailable': HTTP error 503\n\nresponse body:\n\ndown for maintenance\n", wantRetry: true},
		{name: "UnknownAuthority", env: flat(tlsSrv.URL + "/hello"),
			wantLog: "error: unable to download '" + tlsSrv.URL + "/hello': tls: failed to verify certificate"},
		{name: "ConnectionRefused", env: flat("http://127.0.0.1:1/x"), modify: func(s *sandbox.Spec) { s.DownloadAttempts = 1 },
			wantLog: "error: unable to download 'http://127.0.0.1:1/x': dial tcp 127.0.0.1:1: connect: connection refused\n"},
		{name: "MissingFile", env: flat("file:///srv/nothing"),
			wantLog: "error: unable to download 'file:///srv/nothing': open /srv/nothing: no such file or directory\n"},
		{name: "ExecutableFlat", env: map[string]string{"url": srv.URL + "/hello", "executable": "1", "outputHashMode": "flat"},
			wantLog: "error: executable = \"1\" needs outputHashMode = \"recursive\", not \"flat\"\n"},
		{name: "NoURL", env: map[string]string{}, wantLog: "error: attribute 'url' missing\n"},
		{name: "BadNAR", env: recursive(map[string]string{"url": srv.URL + "/hello", "unpack": "1"}), wantLog: "error: restoring nar to " + outPath},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec := newBuiltinSpec(t, "fetchurl", tc.env)
			spec.FixedOutput = true
			if tc.modify != nil {
				tc.modify(spec)
			}
			log, res := runBuilder(t, spec)
			retried := strings.Contains(log, "warning: unable to download '"+tc.env["url"]+"': HTTP error 503\n\nresponse body:\n\n")
			if retried != tc.wantRetry || strings.Contains(log, "; retrying in ") != tc.wantRetry {
				t.Errorf("log:\n%s\nwant a retry warning: %v", log, tc.wantRetry)
			}
			if tc.wantLog != "" {
				if res.ExitCode != 1 || !strings.Contains(log, tc.wantLog) {
					t.Errorf("exit code %d, log:\n%s\nwant exit code 1 and a log containing %q", res.ExitCode, log, tc.wantLog)
				}
				if _, err := os.Lstat(filepath.Join(spec.OutputDir, filepath.Base(outPath))); err == nil {
					t.Errorf("a failed download left an output")
				}
				return
			}
			if res.ExitCode != 0 {
				t.Fatalf("exit code %d, want 0; log:\n%s", res.ExitCode, log)
			}
			if got := listOutput(t, filepath.Join(spec.OutputDir, filepath.Base(outPath))); got != tc.want {
				t.Errorf("output:\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

// listOutput lists the tree at root as "path mode contents" lines,
// directories as "path mode/", root as ".".
func listOutput(t testing.TB, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fmt.Fprintf(&b, "%s %o", rel, fi.Mode().Perm())
		if fi.IsDir() {
			b.WriteString("/\n")
			return nil
		}
		data, err := os.ReadFile(p)
		fmt.Fprintf(&b, " %s\n", strings.TrimSuffix(string(data), "\n"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestRunner_Run_BuiltinBuildenv runs builtin:buildenv in the sandbox over
// two input packages.
func TestRunner_Run_BuiltinBuildenv(t *testing.T) {
	backing := t.TempDir()
	pkgs := map[string]string{}
	for _, name := range []string{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-b"} {
		dir := filepath.Join(backing, name)
		if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "bin", name[33:]), []byte(name), 0o755); err != nil {
			t.Fatal(err)
		}
		pkgs[storeDir+"/"+name] = dir
	}
	spec := newBuiltinSpec(t, "buildenv", map[string]string{
		"derivations": "true 5 1 " + storeDir + "/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a true 5 1 " + storeDir + "/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-b",
		"manifest":    storeDir + "/cccccccccccccccccccccccccccccccc-manifest",
	})
	spec.Inputs = pkgs
	log, res := runBuilder(t, spec)
	if res.ExitCode != 0 {
		t.Fatalf("exit code %d, want 0; log:\n%s", res.ExitCode, log)
	}
	out := filepath.Join(spec.OutputDir, filepath.Base(outPath))
	for link, want := range map[string]string{
		"bin/a":        storeDir + "/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a/bin/a",
		"bin/b":        storeDir + "/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-b/bin/b",
		"manifest.nix": storeDir + "/cccccccccccccccccccccccccccccccc-manifest",
	} {
		if got, err := os.Readlink(filepath.Join(out, link)); err != nil || got != want {
			t.Errorf("readlink %s = %q, %v; want %q", link, got, err, want)
		}
	}
}

// TestRunner_Run_BuiltinUnsupported: an unknown builtin fails as the
// builder, with Nix's message.
func TestRunner_Run_BuiltinUnsupported(t *testing.T) {
	spec := newBuiltinSpec(t, "unpack-channel", nil)
	log, res := runBuilder(t, spec)
	if want := "error: unsupported builtin builder 'unpack-channel'\n"; res.ExitCode != 1 || log != want {
		t.Errorf("exit code %d, log %q; want 1, %q", res.ExitCode, log, want)
	}
}

// TestRunner_Run_BuiltinDisabled runs a builtin without the sandbox: on
// the host, as the build user, creating the output at its real path.
func TestRunner_Run_BuiltinDisabled(t *testing.T) {
	r := newRunner(t, &sandbox.Options{Disabled: true})
	realStore := filepath.Join(t.TempDir(), "store")
	if err := os.Mkdir(realStore, 0o755); err != nil {
		t.Fatal(err)
	}
	// The build user must reach the store and write its output there.
	os.Chmod(filepath.Dir(filepath.Dir(realStore)), 0o755)
	os.Chmod(filepath.Dir(realStore), 0o755)
	os.Chmod(realStore, 0o1777)
	out := realStore + "/" + filepath.Base(outPath)
	spec := newBuiltinSpec(t, "buildenv", map[string]string{"out": out, "derivations": "", "manifest": "/nix/store/manifest"})
	spec.StoreDir = realStore
	spec.Outputs = []string{out}
	os.Chmod(spec.TempDir, 0o755)
	log, res := runBuilderWith(t, r, spec)
	if res.ExitCode != 0 {
		t.Fatalf("exit code %d, want 0; log:\n%s", res.ExitCode, log)
	}
	moved := filepath.Join(spec.OutputDir, filepath.Base(out))
	if got, err := os.Readlink(filepath.Join(moved, "manifest.nix")); err != nil || got != "/nix/store/manifest" {
		t.Errorf("readlink manifest.nix = %q, %v", got, err)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(moved, &st); err != nil || int(st.Uid) != res.UID {
		t.Errorf("output owned by %d (%v), want the build user %d", st.Uid, err, res.UID)
	}
}
