package realise_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storefs/storefs/realise"
	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/cache"
	"github.com/storefs/storefs/store/storetest"
)

// fixtureCache opens one of the fixture caches (made by Nix 2.8) with its
// signatures checked against the fixture's key.
func fixtureCache(t testing.TB, url string) cache.Cache {
	t.Helper()
	// Few, quick retries: the tests break servers on purpose.
	c, err := cache.Open(url, &cache.Options{DownloadAttempts: 2, RetryDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(filepath.Join(storetest.FixturesDir(t), "cache-public.key"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := cache.ParsePublicKeys([]string{strings.TrimSpace(string(key))})
	if err != nil {
		t.Fatal(err)
	}
	return cache.NewSignatureCheckingCache(c, keys)
}

// newSubstEnv is a worker over an empty store (no busybox) that
// substitutes from subs.
func newSubstEnv(t testing.TB, opts *realise.Options, subs ...cache.Cache) *env {
	t.Helper()
	o := realise.Options{}
	if opts != nil {
		o = *opts
	}
	o.Substituters = subs
	return startWorker(t, newTestStore(t), &o)
}

func (e *env) substitutions() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.events {
		if ev.Kind == realise.SubstituteFinished && ev.Status == realise.Substituted {
			n++
		}
	}
	return n
}

// TestSubstitute_FixtureCaches: output paths and derivations realised from
// the caches Nix wrote, into an empty store: substituted with Nix's NAR
// hashes, references and signatures; nothing is built.
func TestSubstitute_FixtureCaches(t *testing.T) {
	dir := storetest.FixturesDir(t)
	for _, name := range []string{"cache-zstd", "cache-xz"} {
		t.Run(name, func(t *testing.T) {
			e := newSubstEnv(t, nil, fixtureCache(t, "file://"+filepath.Join(dir, name)))
			// An output path with a reference: its reference comes too,
			// its deriver does not.
			withref := store.Path("/nix/store/4vxrd7yyg1421x1ay2vkf2l2ds113aa2-refs-withref")
			rep := e.realise(t, realise.Request{Targets: []realise.Target{{Path: withref}}})
			if res := rep.Results[0]; res.Status != realise.Substituted {
				t.Fatalf("realise %s: %v %v", withref, res.Status, res.Err)
			}
			info, err := e.st.PathInfo(withref)
			if err != nil {
				t.Fatal(err)
			}
			if len(info.Signatures) == 0 || info.Deriver != "/nix/store/vi0ml8i53lwv9yh7d0z6f3jj9xnslg2p-refs-withref.drv" {
				t.Errorf("path info %+v lacks Nix's signature or deriver", info)
			}
			for _, r := range info.References {
				if ok, _ := e.st.IsValid(r); !ok {
					t.Errorf("reference %s was not substituted", r)
				}
			}
			if ok, _ := e.st.IsValid(info.Deriver); ok {
				t.Errorf("the deriver was substituted too")
			}
			// A derivation path: the .drv comes from the cache, then its
			// outputs; no builder runs.
			rep = e.realise(t, realise.Request{Targets: []realise.Target{{Path: "/nix/store/4h0v2qwm8xxqj01wh8fy4470n5il00hv-multi.drv"}}})
			if res := rep.Results[0]; res.Status != realise.Substituted || len(res.Outputs) != 3 {
				t.Fatalf("realise multi.drv: %v %v %v", res.Status, res.Outputs, res.Err)
			}
			if n := len(e.builds()); n != 0 {
				t.Errorf("%d builds ran, want none", n)
			}
		})
	}
}

// TestSubstitute_BuildsWhatCachesLack: a .drv substituted from a cache that
// lacks its output is built, with its inputs substituted.
func TestSubstitute_BuildsWhatCachesLack(t *testing.T) {
	e := newSubstEnv(t, nil, fixtureCache(t, "file://"+filepath.Join(storetest.FixturesDir(t), "cache-zstd")))
	// large-output's output is not in the caches (its .drv and busybox are).
	drv := store.Path("/nix/store/pdzzs2xyy9bp5nva0h2df61skgfdimsk-large-output.drv")
	rep := e.realise(t, realise.Request{Targets: []realise.Target{{Path: drv}}})
	if res := rep.Results[0]; res.Status != realise.Built {
		t.Fatalf("realise: %v %v", res.Status, res.Err)
	}
	if e.builds()[drv] != 1 {
		t.Errorf("builds = %v, want one of %s", e.builds(), drv)
	}
	if ok, _ := e.st.IsValid(storetest.BusyboxPath); !ok {
		t.Errorf("busybox, an input, was not substituted")
	}
}

// TestSubstitute_Untrusted: a cache signed by a key we do not trust is not
// used; a path only it has cannot be realised.
func TestSubstitute_Untrusted(t *testing.T) {
	c, err := cache.Open("file://"+filepath.Join(storetest.FixturesDir(t), "cache-zstd"), nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := cache.GenerateKey("other-key-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := other.PublicKey()
	keys, err := cache.ParsePublicKeys([]string{pub.String()})
	if err != nil {
		t.Fatal(err)
	}
	e := newSubstEnv(t, nil, cache.NewSignatureCheckingCache(c, keys))
	p := store.Path("/nix/store/8z3rv77c71xvmyyijyry9760g7fbghah-trivial")
	rep := e.realise(t, realise.Request{Targets: []realise.Target{{Path: p}}})
	res := rep.Results[0]
	if res.Status.Success() || !strings.Contains(res.Err.Msg, "no substituter that can build it") {
		t.Fatalf("realise = %v %v", res.Status, res.Err)
	}
	if ok, _ := e.st.IsValid(p); ok {
		t.Errorf("%s became valid from an untrusted cache", p)
	}
}

// TestSubstitute_HTTP: over HTTP on loopback, a dead substituter among
// live ones does not fail the realisation, concurrent requests share one
// download, and a server that fails mid-download makes the build fall
// back to building with Fallback.
func TestSubstitute_HTTP(t *testing.T) {
	dir := filepath.Join(storetest.FixturesDir(t), "cache-zstd")
	var narRequests atomic.Int32
	var breakNARs atomic.Bool
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/nar/") {
			narRequests.Add(1)
			if breakNARs.Load() {
				// Send a little, then cut the connection.
				w.Header().Set("Content-Length", "100000")
				w.WriteHeader(http.StatusOK)
				w.Write(make([]byte, 100))
				panic(http.ErrAbortHandler)
			}
		}
		files.ServeHTTP(w, r)
	}))
	defer srv.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()

	live := fixtureCache(t, srv.URL)
	deadCache := cache.NewCircuitBreakerCache(fixtureCache(t, deadURL), nil)
	e := newSubstEnv(t, &realise.Options{Fallback: true}, deadCache, live)

	p := store.Path("/nix/store/8z3rv77c71xvmyyijyry9760g7fbghah-trivial")
	errs := make(chan error, 10)
	for i := 0; i < 10; i++ {
		go func() { errs <- e.w.RealisePath(context.Background(), p) }()
	}
	for i := 0; i < 10; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("RealisePath with a dead substituter first = %v", err)
		}
	}
	if n := narRequests.Load(); n != 1 {
		t.Errorf("%d NAR downloads for 10 concurrent requests, want 1", n)
	}

	// The NAR download breaks: with fallback, the derivation is built.
	storetest.AddBusybox(t, e.st)
	storetest.AddFixtureDerivations(t, e.st)
	breakNARs.Store(true)
	drv := store.Path("/nix/store/c3ss66ya501abb9vmarfn9xs18j45n8l-refs-noref.drv")
	rep := e.realise(t, realise.Request{Targets: []realise.Target{{Path: drv}}})
	if res := rep.Results[0]; res.Status != realise.Built {
		t.Fatalf("realise with a broken cache and fallback = %v %v", res.Status, res.Err)
	}
	if entries, _ := os.ReadDir(filepath.Join(e.st.RealDir(), ".tmp")); len(entries) != 0 {
		t.Errorf("the failed download left %v", entries)
	}
}

// TestSubstitute_NoFallback: without fallback a derivation whose outputs
// a cache has but fails to deliver fails with Nix's hint, and nothing is
// built.
func TestSubstitute_NoFallback(t *testing.T) {
	dir := filepath.Join(storetest.FixturesDir(t), "cache-zstd")
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/nar/") {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		files.ServeHTTP(w, r)
	}))
	defer srv.Close()
	e := newSubstEnv(t, &realise.Options{}, fixtureCache(t, srv.URL))
	storetest.AddBusybox(t, e.st)
	storetest.AddFixtureDerivations(t, e.st)
	drv := store.Path("/nix/store/ylidkad964ccmaay0qrd9zdywj84gw6f-trivial.drv")
	rep := e.realise(t, realise.Request{Targets: []realise.Target{{Path: drv}}})
	res := rep.Results[0]
	want := "some substitutes for the outputs of derivation '" + string(drv) + "' failed (usually happens due to networking issues); try '--fallback' to build derivation from source "
	if res.Status != realise.TransientFailure || res.Err.Msg != want {
		t.Fatalf("realise = %v %v, want TransientFailure %q", res.Status, res.Err, want)
	}
	if len(e.builds()) != 0 {
		t.Errorf("builds ran: %v", e.builds())
	}
}

// TestSubstitute_WantedOutputsMerged: a request for another output of a
// derivation whose goal is already substituting one output joins that
// goal, which then realises the new output too before it reports success
// (Nix's needRestart), instead of ending with only the first.
func TestSubstitute_WantedOutputsMerged(t *testing.T) {
	const (
		drv    = store.Path("/nix/store/4h0v2qwm8xxqj01wh8fy4470n5il00hv-multi.drv")
		out    = store.Path("/nix/store/ajs9bgi5f8hnvixzm0kfbyiwdnmhwrkc-multi")
		dev    = store.Path("/nix/store/r87xhvqb2ym6nfy8bwrrnwyac3hpjf8b-multi-dev")
		outNAR = "/nar/1yj9w28qqkhrjbc3cgx7si0xsimxyv3p8g9qf51jadyr8cc8ahh8.nar.zst"
	)
	dir := filepath.Join(storetest.FixturesDir(t), "cache-zstd")
	files := http.FileServer(http.Dir(dir))
	blocked, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == outNAR {
			once.Do(func() { close(blocked) })
			<-release
		}
		files.ServeHTTP(w, r)
	}))
	defer srv.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()

	e := newSubstEnv(t, nil, fixtureCache(t, srv.URL))
	storetest.AddBusybox(t, e.st)
	storetest.AddFixtureDerivations(t, e.st)
	realiseOutputs := func(outputs ...string) <-chan *realise.Report {
		c := make(chan *realise.Report, 1)
		go func() {
			rep, err := e.w.Realise(context.Background(), realise.Request{Targets: []realise.Target{{Path: drv, Outputs: outputs}}})
			if err != nil {
				t.Errorf("Realise(%s!%v) = %v", drv, outputs, err)
			}
			c <- rep
		}()
		return c
	}
	first := realiseOutputs("out")
	select {
	case <-blocked:
	case <-time.After(time.Minute):
		t.Fatal("the first request never fetched the NAR of out")
	}
	second := realiseOutputs("dev")
	// Let the second request reach the goal; if it is late, it starts a
	// goal of its own and the test proves nothing, but still passes.
	time.Sleep(200 * time.Millisecond)
	close(release)
	for _, c := range []<-chan *realise.Report{first, second} {
		rep := <-c
		if rep == nil {
			continue
		}
		if res := rep.Results[0]; !res.Status.Success() {
			t.Errorf("%v: %v %v", res.Target, res.Status, res.Err)
		}
	}
	for _, p := range []store.Path{out, dev} {
		if ok, err := e.st.IsValid(p); err != nil || !ok {
			t.Errorf("IsValid(%s) = %v, %v after both requests succeeded; want true", p, ok, err)
		}
	}
}
