package realise_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/storefs/storefs/realise"
	"github.com/storefs/storefs/sandbox"
	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/nar"
)

// addFetchurl adds a builtin:fetchurl derivation of url whose output has
// the fixed SHA-256 hash h, of its contents (flat) or NAR (recursive);
// attrs are more attributes.
func addFetchurl(t testing.TB, st *store.Store, name, url string, recursive bool, h store.Hash, attrs map[string]string) store.Path {
	t.Helper()
	mode, algo := "flat", "sha256"
	if recursive {
		mode, algo = "recursive", "r:sha256"
	}
	d := &store.Derivation{
		Name:      name,
		Outputs:   map[string]store.DerivationOutput{"out": {HashAlgo: algo, Hash: h.Base16()}},
		InputDrvs: map[store.Path][]string{},
		Platform:  "builtin",
		Builder:   "builtin:fetchurl",
		Env: map[string]string{
			"name": name, "system": "builtin", "builder": "builtin:fetchurl", "url": url,
			"outputHashMode": mode, "outputHashAlgo": "sha256", "outputHash": h.Base32(),
		},
	}
	for k, v := range attrs {
		d.Env[k] = v
	}
	p, err := st.AddDerivation(context.Background(), d)
	if err != nil {
		t.Fatalf("AddDerivation(%s) = %v", name, err)
	}
	return p
}

// narHash returns the NAR and its SHA-256 of a file with data, executable
// or not.
func narHash(t testing.TB, data string, executable bool) ([]byte, store.Hash) {
	t.Helper()
	perm := os.FileMode(0o644)
	if executable {
		perm = 0o755
	}
	f := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(f, []byte(data), perm); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := nar.Dump(&b, f); err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), store.HashBytes(store.SHA256, b.Bytes())
}

// TestWorker_BuiltinFetchurl builds fixed-output builtin:fetchurl
// derivations with a real worker and sandbox, from a server on loopback
// and from a file bound into the sandbox.
func TestWorker_BuiltinFetchurl(t *testing.T) {
	const hello = "hello, world\n"
	const script = "#!/bin/sh\necho hi\n"
	helloHash := store.HashString(store.SHA256, hello)
	helloNAR, helloNARHash := narHash(t, hello, false)
	_, scriptNARHash := narHash(t, script, true)

	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(hello)) })
	mux.HandleFunc("/hello.nar", func(w http.ResponseWriter, r *http.Request) { w.Write(helloNAR) })
	mux.HandleFunc("/script", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(script)) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	files := t.TempDir()
	if err := os.Chmod(files, 0o755); err != nil { // the build user reads it
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(files, "hello"), []byte(hello), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, &realise.Options{SandboxPaths: []sandbox.BindPath{{Target: "/srv/files", Source: files}}})

	for _, tc := range []struct {
		name      string
		url       string
		recursive bool
		hash      store.Hash
		attrs     map[string]string
		want      string      // the output's contents
		wantMode  os.FileMode // and mode, canonicalised
	}{
		{name: "HTTP", url: srv.URL + "/hello", hash: helloHash, want: hello, wantMode: 0o444},
		{name: "File", url: "file:///srv/files/hello", hash: helloHash, want: hello, wantMode: 0o444},
		{name: "Unpack", url: srv.URL + "/hello.nar", recursive: true, hash: helloNARHash,
			attrs: map[string]string{"unpack": "1"}, want: hello, wantMode: 0o444},
		{name: "Executable", url: srv.URL + "/script", recursive: true, hash: scriptNARHash,
			attrs: map[string]string{"executable": "1"}, want: script, wantMode: 0o555},
	} {
		t.Run(tc.name, func(t *testing.T) {
			drv := addFetchurl(t, e.st, "fetch-"+strings.ToLower(tc.name), tc.url, tc.recursive, tc.hash, tc.attrs)
			rep := e.realise(t, realise.Request{Targets: targetsOf(drv)})
			res := rep.Results[0]
			if res.Status != realise.Built {
				t.Fatalf("status %v, want Built; error: %v", res.Status, res.Err)
			}
			out := res.Outputs["out"]
			data, err := os.ReadFile(e.st.RealPath(out))
			if err != nil || string(data) != tc.want {
				t.Errorf("output %s = %q, %v; want %q", out, data, err, tc.want)
			}
			if fi, err := os.Lstat(e.st.RealPath(out)); err != nil || fi.Mode() != tc.wantMode {
				t.Errorf("output mode = %v, %v; want %v", fi.Mode(), err, tc.wantMode)
			}
			info, err := e.st.PathInfo(out)
			if err != nil || info.CA != store.FixedCA(tc.recursive, tc.hash) {
				t.Errorf("output's ca = %q, %v; want %q", info.CA, err, store.FixedCA(tc.recursive, tc.hash))
			}
		})
	}

	t.Run("HashMismatch", func(t *testing.T) {
		wrong := store.HashString(store.SHA256, "something else\n")
		drv := addFetchurl(t, e.st, "fetch-mismatch", srv.URL+"/hello", false, wrong, nil)
		rep := e.realise(t, realise.Request{Targets: targetsOf(drv)})
		res := rep.Results[0]
		if got, want := rep.Bits(), realise.BitBuildFailure|realise.BitHashMismatch; got != want {
			t.Errorf("bits = %d, want %d (exit code 102); error: %v", got, want, res.Err)
		}
		if res.Err == nil || !strings.HasPrefix(res.Err.Msg, "hash mismatch in fixed-output derivation '"+string(drv)+"':") ||
			!strings.Contains(res.Err.Msg, "got:    "+helloHash.SRI()) {
			t.Errorf("error = %v, want Nix's hash mismatch naming %s and the hash got", res.Err, drv)
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		drv := addFetchurl(t, e.st, "fetch-missing", srv.URL+"/missing", false, helloHash, nil)
		rep := e.realise(t, realise.Request{Targets: targetsOf(drv)})
		res := rep.Results[0]
		// A fetcher's failure may be the network's: transient, exit 1
		// without bits, as in Nix.
		if res.Status != realise.TransientFailure || rep.Bits() != 0 {
			t.Fatalf("status %v bits %d, want TransientFailure and no bits; error: %v", res.Status, rep.Bits(), res.Err)
		}
		want := "error: unable to download '" + srv.URL + "/missing': HTTP error 404"
		if msg := res.Err.Error(); !strings.Contains(msg, "builder for '"+string(drv)+"' failed with exit code 1") || !strings.Contains(msg, want) {
			t.Errorf("error = %q, want the builder's failure and %q in its log tail", msg, want)
		}
		if ok, _ := e.st.IsValid(outputOf(t, e.st, drv)); ok {
			t.Errorf("output became valid")
		}
	})
}

// TestWorker_BuiltinBuildenv builds a user environment of two packages
// with builtin:buildenv, and one whose packages collide.
func TestWorker_BuiltinBuildenv(t *testing.T) {
	e := newEnv(t, nil)
	a := addDrv(t, e.st, "pkg-a", "mkdir -p $out/bin $out/share/a; echo a > $out/bin/a; echo x > $out/bin/x")
	b := addDrv(t, e.st, "pkg-b", "mkdir -p $out/bin; echo b > $out/bin/b; echo x > $out/bin/x")
	c := addDrv(t, e.st, "pkg-c", "mkdir -p $out/bin; echo c > $out/bin/c")
	manifest, err := e.st.AddText(context.Background(), "env-manifest.nix", []byte("[ ]"), nil)
	if err != nil {
		t.Fatal(err)
	}
	addEnv := func(name string, prioB string, pkgs ...store.Path) store.Path {
		t.Helper()
		d := &store.Derivation{
			Name:      name,
			Outputs:   map[string]store.DerivationOutput{"out": {}},
			InputDrvs: map[store.Path][]string{},
			InputSrcs: []store.Path{manifest},
			Platform:  "builtin",
			Builder:   "builtin:buildenv",
			Env:       map[string]string{"name": name, "system": "builtin", "builder": "builtin:buildenv", "manifest": string(manifest)},
		}
		var list []string
		for i, p := range pkgs {
			d.InputDrvs[p] = []string{"out"}
			prio := "5"
			if i == 1 {
				prio = prioB
			}
			list = append(list, "true", prio, "1", string(outputOf(t, e.st, p)))
		}
		d.Env["derivations"] = strings.Join(list, " ")
		p, err := e.st.AddDerivation(context.Background(), d)
		if err != nil {
			t.Fatalf("AddDerivation(%s) = %v", name, err)
		}
		return p
	}

	t.Run("Links", func(t *testing.T) {
		drv := addEnv("user-env", "5", a, c)
		rep := e.realise(t, realise.Request{Targets: targetsOf(drv)})
		res := rep.Results[0]
		if res.Status != realise.Built {
			t.Fatalf("status %v, want Built; error: %v", res.Status, res.Err)
		}
		out := e.st.RealPath(res.Outputs["out"])
		outA, outC := string(outputOf(t, e.st, a)), string(outputOf(t, e.st, c))
		for link, want := range map[string]string{
			"bin/a":        outA + "/bin/a",
			"bin/x":        outA + "/bin/x",
			"bin/c":        outC + "/bin/c",
			"share":        outA + "/share",
			"manifest.nix": string(manifest),
		} {
			if got, err := os.Readlink(filepath.Join(out, link)); err != nil || got != want {
				t.Errorf("readlink %s = %q, %v; want %q", link, got, err, want)
			}
		}
		if fi, err := os.Lstat(filepath.Join(out, "bin")); err != nil || !fi.IsDir() {
			t.Errorf("bin is not a merged directory: %v, %v", fi, err)
		}
		info, err := e.st.PathInfo(res.Outputs["out"])
		if err != nil || len(info.References) != 3 {
			t.Errorf("references = %v, %v; want both packages and the manifest", info.References, err)
		}
	})

	t.Run("Collision", func(t *testing.T) {
		drv := addEnv("user-env-collision", "5", a, b)
		rep := e.realise(t, realise.Request{Targets: targetsOf(drv)})
		res := rep.Results[0]
		if res.Status != realise.PermanentFailure || rep.Bits() != realise.BitBuildFailure {
			t.Fatalf("status %v bits %d, want PermanentFailure, bits %d; error: %v", res.Status, rep.Bits(), realise.BitBuildFailure, res.Err)
		}
		// Equal priorities are linked in path order; the second collides.
		first, second := string(outputOf(t, e.st, a)), string(outputOf(t, e.st, b))
		if second < first {
			first, second = second, first
		}
		want := "error: packages '" + second + "/bin/x' and '" + first + "/bin/x' have the same priority 5; " +
			"use 'nix-env --set-flag priority NUMBER INSTALLED_PKGNAME' to change the priority of one of the conflicting packages (0 being the highest priority)"
		if msg := res.Err.Error(); !strings.Contains(msg, want) {
			t.Errorf("error = %q, want its log tail to say %q", msg, want)
		}
	})

	t.Run("Priority", func(t *testing.T) {
		// b's priority 3 beats a's 5: bin/x is b's.
		drv := addEnv("user-env-priority", "3", a, b)
		rep := e.realise(t, realise.Request{Targets: targetsOf(drv)})
		res := rep.Results[0]
		if res.Status != realise.Built {
			t.Fatalf("status %v, want Built; error: %v", res.Status, res.Err)
		}
		want := string(outputOf(t, e.st, b)) + "/bin/x"
		if got, err := os.Readlink(filepath.Join(e.st.RealPath(res.Outputs["out"]), "bin/x")); err != nil || got != want {
			t.Errorf("readlink bin/x = %q, %v; want %q", got, err, want)
		}
	})
}
