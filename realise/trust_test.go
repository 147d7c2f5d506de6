package realise_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/storefs/storefs/realise"
	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/cache"
	"github.com/storefs/storefs/store/nar/nartest"
)

// signedEntry is a path a signedCache serves: a file holding text, with
// the given references.
type signedEntry struct {
	path store.Path
	text string
	refs []store.Path
}

// signedCache writes entries into a new file cache, signed by a fresh key,
// and returns it with signatures checked against that key: everything it
// serves is trusted, so only Fetch's and the worker's own checks stand
// between a hostile (or broken) cache and the store.
func signedCache(t testing.TB, entries ...signedEntry) cache.Cache {
	t.Helper()
	ctx := context.Background()
	c, err := cache.NewFileCache(t.TempDir(), &cache.Options{Compression: "zstd"})
	if err != nil {
		t.Fatal(err)
	}
	sk, err := cache.GenerateKey("hostile-test-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data := nartest.NAR(nartest.File(e.text))
		ni := &cache.NARInfo{StorePath: e.path, NARHash: store.HashBytes(store.SHA256, data), NARSize: uint64(len(data)), References: e.refs}
		if err := c.PutNAR(ctx, ni, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		ni.Sign(sk)
		if err := c.PutNARInfo(ctx, ni); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := cache.ParsePublicKeys([]string{sk.PublicKey().String()})
	if err != nil {
		t.Fatal(err)
	}
	return cache.NewSignatureCheckingCache(c, keys)
}

// checkNothingSubstituted fails if any of ps is valid or has contents in
// the backing store, or if the temporary area holds anything.
func checkNothingSubstituted(t testing.TB, st *store.Store, ps ...store.Path) {
	t.Helper()
	for _, p := range ps {
		if ok, _ := st.IsValid(p); ok {
			t.Errorf("%s is valid", p)
		}
		if _, err := os.Lstat(st.RealPath(p)); err == nil {
			t.Errorf("%s has contents in the backing store", p)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		entries, _ := os.ReadDir(filepath.Join(st.RealDir(), ".tmp"))
		if len(entries) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("the temporary area holds %v", entries)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const (
	hostileA store.Path = "/nix/store/0a3s5ydkdvlz4jdmgfsgm1c4p0d3mk57-hostile-a"
	hostileB store.Path = "/nix/store/0b3s5ydkdvlz4jdmgfsgm1c4p0d3mk57-hostile-b"
	hostileC store.Path = "/nix/store/0c3s5ydkdvlz4jdmgfsgm1c4p0d3mk57-hostile-c"
)

// TestSubstitute_ClosureBreakingReferences: narinfos whose references
// cannot make a closure (a reference no cache has, references in a
// cycle) are refused promptly: the path and its references stay invalid,
// nothing is left in the temporary area, and the worker does not wait for
// ever on goals that wait on each other.
func TestSubstitute_ClosureBreakingReferences(t *testing.T) {
	cases := []struct {
		name    string
		entries []signedEntry
		want    realise.Status
		both    bool // realise hostileB at the same time
	}{
		{"MissingReference", []signedEntry{
			{hostileA, "a refers to " + string(hostileB), []store.Path{hostileB}},
		}, realise.DependencyFailed, false},
		{"MissingReferenceOfReference", []signedEntry{
			{hostileA, "a refers to " + string(hostileB), []store.Path{hostileB}},
			{hostileB, "b refers to " + string(hostileC), []store.Path{hostileC}},
		}, realise.DependencyFailed, false},
		{"TwoCycle", []signedEntry{
			{hostileA, "a refers to " + string(hostileB), []store.Path{hostileB}},
			{hostileB, "b refers to " + string(hostileA), []store.Path{hostileA}},
		}, realise.DependencyFailed, false},
		{"TwoCycleBothRequested", []signedEntry{
			{hostileA, "a refers to " + string(hostileB), []store.Path{hostileB}},
			{hostileB, "b refers to " + string(hostileA), []store.Path{hostileA}},
		}, realise.DependencyFailed, true},
		{"ThreeCycleWithSelfReferences", []signedEntry{
			{hostileA, "a", []store.Path{hostileA, hostileB}},
			{hostileB, "b", []store.Path{hostileB, hostileC}},
			{hostileC, "c", []store.Path{hostileC, hostileA}},
		}, realise.DependencyFailed, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newSubstEnv(t, nil, signedCache(t, tc.entries...))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			targets := []realise.Target{{Path: hostileA}}
			if tc.both {
				targets = append(targets, realise.Target{Path: hostileB})
			}
			rep, err := e.w.Realise(ctx, realise.Request{Targets: targets, KeepGoing: true})
			if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
				t.Fatalf("Realise(%s) did not end within 20s: the goals wait on each other (err %v)", hostileA, err)
			}
			if err != nil {
				t.Fatalf("Realise(%s) = %v", hostileA, err)
			}
			for _, res := range rep.Results {
				if res.Status.Success() || res.Err == nil {
					t.Fatalf("Realise(%s) = %v, want a failure", res.Target, res.Status)
				}
				if res.Status != tc.want {
					t.Errorf("Realise(%s): status %v (%v), want %v", res.Target, res.Status, res.Err, tc.want)
				}
			}
			checkNothingSubstituted(t, e.st, hostileA, hostileB, hostileC)
		})
	}
}
