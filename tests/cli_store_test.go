package tests

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/storefs/storefs/store"
)

// These tests drive the store commands (add, path-info, query, delete,
// hash, config) through the real binary on real stores, and compare what
// they print with what Nix 2.8 printed for the same paths (the fixtures) or
// with values the test computes itself from Nix's definitions.

// csNixInfo is one entry of Nix's `nix path-info --json`, as the fixtures
// recorded it.
type csNixInfo struct {
	Path       string   `json:"path"`
	NARHash    string   `json:"narHash"`
	NARSize    uint64   `json:"narSize"`
	References []string `json:"references"`
	Deriver    string   `json:"deriver"`
	Ultimate   bool     `json:"ultimate"`
}

// csChain is the first three nodes of the fixtures' chain case: chain-i's
// .drv refers to busybox and to chain-(i-1).drv; its output refers to the
// output of chain-(i-1).
type csChain struct {
	drv, drvFile, out [3]string
	// nix is Nix's path info of each output, by path.
	nix map[string]csNixInfo
}

func csLoadChain(t testing.TB) csChain {
	t.Helper()
	fx := fixturesDir(t)
	var c csChain
	entries, err := os.ReadDir(filepath.Join(fx, "drvs", "store"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range c.drv {
		suffix := fmt.Sprintf("-chain-%d.drv", i)
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), suffix) {
				c.drv[i] = "/nix/store/" + e.Name()
				c.drvFile[i] = filepath.Join(fx, "drvs", "store", e.Name())
			}
		}
		if c.drv[i] == "" {
			t.Fatalf("no fixture .drv ends in %s", suffix)
		}
	}
	var exp struct {
		RuntimeClosure []csNixInfo `json:"runtimeClosure"`
	}
	csReadJSON(t, filepath.Join(fx, "expected", "chain.json"), &exp)
	c.nix = map[string]csNixInfo{}
	for _, info := range exp.RuntimeClosure {
		for i, d := range c.drv {
			if info.Deriver == d {
				c.out[i] = info.Path
				c.nix[info.Path] = info
			}
		}
	}
	for i, o := range c.out {
		if o == "" {
			t.Fatalf("chain.json has no output of %s", c.drv[i])
		}
	}
	return c
}

// csAddChain adds busybox and the three .drv files (ATerm, as Nix wrote
// them) to in.
func csAddChain(t testing.TB, in *instance, c csChain) {
	t.Helper()
	if got := strings.TrimSpace(in.ok("add", busyboxDir(t))); got != busyboxPath {
		t.Fatalf("add busybox = %q, want %q", got, busyboxPath)
	}
	for i, f := range c.drvFile {
		if got := strings.TrimSpace(in.ok("derivation", "add", f)); got != c.drv[i] {
			t.Fatalf("derivation add %s = %q, want %q", f, got, c.drv[i])
		}
	}
}

// csBuiltChain is an instance holding the chain's derivations and their
// built outputs.
func csBuiltChain(t testing.TB) (*instance, csChain) {
	t.Helper()
	c := csLoadChain(t)
	in := newInstance(t)
	csAddChain(t, in, c)
	r := in.run("", "realise", c.drv[2])
	if r.code != 0 || !strings.Contains(r.stdout, c.out[2]) {
		t.Fatalf("realise %s: exit %d, stdout %q, stderr:\n%s", c.drv[2], r.code, r.stdout, r.stderr)
	}
	return in, c
}

func csReadJSON(t testing.TB, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("parsing %s: %v", name, err)
	}
}

// csLines splits command output into its lines; no output is no lines.
func csLines(s string) []string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func csSorted(ss []string) []string {
	out := append([]string(nil), ss...)
	sort.Strings(out)
	return out
}

// csBusybox is what Nix 2.8 recorded of busybox: its path info (from the
// sandbox-check case's runtime closure), its NAR hash in nix-base32 (from
// the narinfo Nix wrote) and the sha256 of bin/busybox (_meta.json).
type csBusybox struct {
	info          csNixInfo
	narHashBase32 string
	fileSHA256    string
}

func csLoadBusybox(t testing.TB) csBusybox {
	t.Helper()
	fx := fixturesDir(t)
	var b csBusybox
	var exp struct {
		RuntimeClosure []csNixInfo `json:"runtimeClosure"`
	}
	csReadJSON(t, filepath.Join(fx, "expected", "sandbox-check.json"), &exp)
	for _, info := range exp.RuntimeClosure {
		if info.Path == busyboxPath {
			b.info = info
		}
	}
	narinfo, err := os.ReadFile(filepath.Join(fx, "cache-xz", "71fc7s32zl20dc955bhghy5dvalm7ndz.narinfo"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(narinfo), "\n") {
		if v, ok := strings.CutPrefix(l, "NarHash: sha256:"); ok {
			b.narHashBase32 = v
		}
	}
	var meta struct {
		BusyboxSHA256 string `json:"busyboxSha256"`
	}
	csReadJSON(t, filepath.Join(fx, "expected", "_meta.json"), &meta)
	b.fileSHA256 = meta.BusyboxSHA256
	if b.info.Path == "" || b.narHashBase32 == "" || b.fileSHA256 == "" {
		t.Fatalf("busybox fixtures incomplete: %+v", b)
	}
	return b
}

// csSRIDigest decodes the digest of an SRI hash "sha256-<base64>".
func csSRIDigest(t testing.TB, sri string) []byte {
	t.Helper()
	b64, ok := strings.CutPrefix(sri, "sha256-")
	if !ok {
		t.Fatalf("%q is not a sha256 SRI hash", sri)
	}
	d, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// csMakeStorePath is Nix's makeStorePath, written out here independently
// of the store package (only its nix-base32 encoder is shared): the
// fingerprint "<type>:sha256:<hex>:<store dir>:<name>" is hashed with
// SHA-256 and XOR-folded to 20 bytes.
func csMakeStorePath(typ string, sha256Digest []byte, storeDir, name string) string {
	fp := sha256.Sum256([]byte(typ + ":sha256:" + hex.EncodeToString(sha256Digest) + ":" + storeDir + ":" + name))
	var folded [20]byte
	for i, b := range fp {
		folded[i%20] ^= b
	}
	return storeDir + "/" + store.Base32Encode(folded[:]) + "-" + name
}

// csTextPath is Nix's path of a text file (builtins.toFile, a .drv):
// type "text" followed by the sorted references.
func csTextPath(contents []byte, refs []string, storeDir, name string) string {
	typ := "text"
	for _, r := range csSorted(refs) {
		typ += ":" + r
	}
	h := sha256.Sum256(contents)
	return csMakeStorePath(typ, h[:], storeDir, name)
}

// csNARFile is the NAR serialisation of a regular, non-executable file,
// written out here from the format: each string is its 64-bit
// little-endian length, its bytes and zeros up to a multiple of 8.
func csNARFile(contents []byte) []byte {
	var b bytes.Buffer
	str := func(s []byte) {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
		b.Write(n[:])
		b.Write(s)
		b.Write(make([]byte, (8-len(s)%8)%8))
	}
	for _, s := range []string{"nix-archive-1", "(", "type", "regular", "contents"} {
		str([]byte(s))
	}
	str(contents)
	str([]byte(")"))
	return b.Bytes()
}

// csEnv is the test's environment without any STOREFS_ variable.
func csEnv(extra ...string) []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "STOREFS_") {
			env = append(env, e)
		}
	}
	return append(env, extra...)
}

// TestCLIStore_Query: the query modes on the chain's derivations and built
// outputs print the paths Nix's graph has, in Nix's order where the graph
// fixes it (--references, --referrers and --requisites come dependencies
// first), and the built outputs have the path info Nix gave them.
func TestCLIStore_Query(t *testing.T) {
	in, c := csBuiltChain(t)
	cases := []struct {
		name string
		args []string
		want []string
		// ordered: the lines must come in this order (one per argument,
		// or dependencies first, as in Nix).
		ordered bool
	}{
		{"ReferencesOfDrv", []string{"--references", c.drv[2]}, []string{busyboxPath, c.drv[1]}, false},
		{"ReferencesOfSourceDrv", []string{"--references", c.drv[0]}, []string{busyboxPath}, false},
		{"ReferencesOfOutput", []string{"--references", c.out[2]}, []string{c.out[1]}, false},
		{"ReferencesOfLeaf", []string{"--references", c.out[0]}, nil, false},
		{"ReferrersOfDrv", []string{"--referrers", c.drv[0]}, []string{c.drv[1]}, false},
		{"ReferrersOfBusybox", []string{"--referrers", busyboxPath}, []string{c.drv[0], c.drv[1], c.drv[2]}, true},
		{"ReferrersOfOutput", []string{"--referrers", c.out[0]}, []string{c.out[1]}, false},
		{"ReferrersOfTop", []string{"--referrers", c.out[2]}, nil, false},
		{"RequisitesOfDrv", []string{"--requisites", c.drv[2]}, []string{busyboxPath, c.drv[0], c.drv[1], c.drv[2]}, true},
		{"RequisitesShort", []string{"-R", c.out[2]}, []string{c.out[0], c.out[1], c.out[2]}, true},
		{"RequisitesUnion", []string{"--requisites", c.out[1], c.drv[0]}, []string{busyboxPath, c.drv[0], c.out[0], c.out[1]}, false},
		{"Outputs", []string{"--outputs", c.drv[2]}, []string{c.out[2]}, false},
		{"OutputsOfSeveral", []string{"--outputs", c.drv[0], c.drv[1]}, []string{c.out[0], c.out[1]}, false},
		{"ValidDerivers", []string{"--valid-derivers", c.out[1]}, []string{c.drv[1]}, false},
		{"Deriver", []string{"--deriver", c.out[2], busyboxPath, c.out[0]}, []string{c.drv[2], "unknown-deriver", c.drv[0]}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := csLines(in.ok(append([]string{"query"}, tc.args...)...))
			want := tc.want
			if !tc.ordered {
				got, want = csSorted(got), csSorted(want)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("query %v = %q, want %q", tc.args, got, want)
			}
		})
	}

	t.Run("OutputPathInfoIsNix", func(t *testing.T) {
		var got []map[string]any
		if err := json.Unmarshal([]byte(in.ok("path-info", "--json", c.out[0], c.out[1], c.out[2])), &got); err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 {
			t.Fatalf("path-info --json gave %d entries, want 3", len(got))
		}
		for _, g := range got {
			if rt, ok := g["registrationTime"].(float64); !ok || rt <= 0 {
				t.Errorf("%v: registrationTime = %v, want a time", g["path"], g["registrationTime"])
			}
			delete(g, "registrationTime")
			nix := c.nix[fmt.Sprint(g["path"])]
			refs := []any{}
			for _, r := range nix.References {
				refs = append(refs, r)
			}
			want := map[string]any{
				"path":       nix.Path,
				"narHash":    nix.NARHash,
				"narSize":    float64(nix.NARSize),
				"references": refs,
				"deriver":    nix.Deriver,
				"ultimate":   nix.Ultimate,
			}
			if !reflect.DeepEqual(g, want) {
				t.Errorf("path-info --json = %v, Nix 2.8 gave %v", g, want)
			}
		}
	})

	t.Run("ValidDeriversForgetsDeletedDrv", func(t *testing.T) {
		// The .drv goes (nothing refers to it); the output keeps its
		// deriver, as in Nix, but no valid deriver is left.
		in.ok("delete", c.drv[2])
		if got := csLines(in.ok("query", "--valid-derivers", c.out[2])); len(got) != 0 {
			t.Errorf("query --valid-derivers after deleting the .drv = %q, want nothing", got)
		}
		if got := strings.TrimSpace(in.ok("query", "--deriver", c.out[2])); got != c.drv[2] {
			t.Errorf("query --deriver after deleting the .drv = %q, want %q", got, c.drv[2])
		}
		r := in.run("", "query", "--outputs", c.drv[2])
		if r.code == 0 || !strings.Contains(r.stderr, c.drv[2]) || r.stdout != "" {
			t.Errorf("query --outputs of a deleted .drv: exit %d, stdout %q, stderr %q; want an error naming it", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("Errors", func(t *testing.T) {
		invalid := "/nix/store/00000000000000000000000000000000-nothing"
		for _, args := range [][]string{
			{"query", "--referrers", invalid},
			{"query", "--references", invalid},
			{"query", "--requisites", invalid},
			{"query", "--deriver", invalid},
			{"query", "--references", "--referrers", c.out[0]},
			{"query", "--references"},
			{"query", "--outputs", c.out[0]},
		} {
			r := in.run("", args...)
			if r.code != 1 || r.stdout != "" || !strings.HasPrefix(r.stderr, "error: ") {
				t.Errorf("storefs %v: exit %d, stdout %q, stderr %q; want exit 1 and an error", args, r.code, r.stdout, r.stderr)
			}
		}
		r := in.run("", "query", "--referrers", invalid)
		if want := "error: path '" + invalid + "' is not valid"; !strings.Contains(r.stderr, want) {
			t.Errorf("query --referrers of an invalid path: stderr %q, want %q", r.stderr, want)
		}
	})
}

// TestCLIStore_PathInfoClosure: path-info -r lists the closure, -S adds
// the closure's total NAR size (Nix's sizes summed), and --json has Nix
// 2.8's fields in Nix's order.
func TestCLIStore_PathInfoClosure(t *testing.T) {
	in, c := csBuiltChain(t)
	size := func(i int) uint64 { return c.nix[c.out[i]].NARSize }
	closureSize := []uint64{size(0), size(0) + size(1), size(0) + size(1) + size(2)}

	t.Run("Recursive", func(t *testing.T) {
		got := csSorted(csLines(in.ok("path-info", "-r", c.out[2])))
		if want := csSorted(c.out[:]); !reflect.DeepEqual(got, want) {
			t.Errorf("path-info -r = %q, want %q", got, want)
		}
		got = csSorted(csLines(in.ok("path-info", "--recursive", c.drv[1])))
		if want := csSorted([]string{busyboxPath, c.drv[0], c.drv[1]}); !reflect.DeepEqual(got, want) {
			t.Errorf("path-info --recursive = %q, want %q", got, want)
		}
	})

	t.Run("ClosureSize", func(t *testing.T) {
		// Each line is "<path> <closure size>" (white space between).
		sizes := map[string]uint64{}
		for _, l := range csLines(in.ok("path-info", "-r", "-S", c.out[2])) {
			f := strings.Fields(l)
			if len(f) != 2 {
				t.Fatalf("path-info -r -S line %q, want a path and a size", l)
			}
			n, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				t.Fatalf("path-info -r -S line %q: %v", l, err)
			}
			sizes[f[0]] = n
		}
		want := map[string]uint64{c.out[0]: closureSize[0], c.out[1]: closureSize[1], c.out[2]: closureSize[2]}
		if !reflect.DeepEqual(sizes, want) {
			t.Errorf("path-info -r -S sizes = %v, want %v", sizes, want)
		}
		bb := csLoadBusybox(t)
		// Nix's layout: the path, a tab, the size right-aligned in 11.
		if got, want := in.ok("path-info", "--closure-size", busyboxPath), fmt.Sprintf("%s\t%11d\n", busyboxPath, bb.info.NARSize); got != want {
			t.Errorf("path-info --closure-size busybox = %q, want %q", got, want)
		}
		f := strings.Fields(in.ok("path-info", "--closure-size", busyboxPath))
		// A .drv's closure holds busybox and the .drv files below it.
		var drvs []map[string]any
		if err := json.Unmarshal([]byte(in.ok("path-info", "--json", "-r", c.drv[1])), &drvs); err != nil {
			t.Fatal(err)
		}
		var drvSum uint64
		for _, d := range drvs {
			n, _ := d["narSize"].(float64)
			drvSum += uint64(n)
		}
		f = strings.Fields(in.ok("path-info", "-S", c.drv[1]))
		if len(drvs) != 3 || len(f) != 2 || f[1] != strconv.FormatUint(drvSum, 10) || drvSum <= bb.info.NARSize {
			t.Errorf("path-info -S %s = %q, want the sum %d of the narSizes of %v", c.drv[1], f, drvSum, drvs)
		}
	})

	t.Run("JSON", func(t *testing.T) {
		out := in.ok("path-info", "--json", "-S", c.out[2])
		keys := csJSONKeys(t, out)
		want := []string{"path", "narHash", "narSize", "references", "closureSize", "deriver", "registrationTime", "ultimate"}
		if !reflect.DeepEqual(keys, want) {
			t.Errorf("path-info --json -S keys = %q, want Nix 2.8's %q", keys, want)
		}
		var got []struct {
			Path        string  `json:"path"`
			ClosureSize *uint64 `json:"closureSize"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Path != c.out[2] || got[0].ClosureSize == nil || *got[0].ClosureSize != closureSize[2] {
			t.Errorf("path-info --json -S = %s, want closureSize %d", out, closureSize[2])
		}
		// Without -S there is no closureSize; -r gives one entry per
		// path of the closure.
		out = in.ok("path-info", "--json", "-r", c.out[2])
		if strings.Contains(out, "closureSize") {
			t.Errorf("path-info --json without -S has a closureSize: %s", out)
		}
		got = nil
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatal(err)
		}
		var paths []string
		for _, g := range got {
			paths = append(paths, g.Path)
		}
		if !reflect.DeepEqual(csSorted(paths), csSorted(c.out[:])) {
			t.Errorf("path-info --json -r paths = %q, want %q", paths, c.out)
		}
	})

	t.Run("Errors", func(t *testing.T) {
		r := in.run("", "path-info", "-r", "/nix/store/00000000000000000000000000000000-nothing")
		if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "00000000000000000000000000000000-nothing") {
			t.Errorf("path-info -r of an invalid path: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		r = in.run("", "path-info", "--all", c.out[0])
		if r.code != 1 || r.stdout != "" {
			t.Errorf("path-info --all with a PATH: exit %d, stdout %q", r.code, r.stdout)
		}
	})
}

// csJSONKeys returns the keys of the first object of a JSON array, in the
// order they were written.
func csJSONKeys(t testing.TB, s string) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	for _, want := range []json.Delim{'[', '{'} {
		if tok, err := dec.Token(); err != nil || tok != want {
			t.Fatalf("JSON %s: got %v (%v), want %v", s, tok, err, want)
		}
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("JSON %s: %v", s, err)
		}
		keys = append(keys, tok.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("JSON %s: %v", s, err)
		}
	}
	return keys
}

// TestCLIStore_AddTextIsNixTextPath: `add --text` of each chain .drv,
// with the .drv's inputs as references, lands on the path Nix gave the
// .drv, whatever order the references come in; its path info is that of
// Nix's text paths.
func TestCLIStore_AddTextIsNixTextPath(t *testing.T) {
	c := csLoadChain(t)
	in := newInstance(t)
	in.ok("add", busyboxDir(t))
	for i := range c.drv {
		contents, err := os.ReadFile(c.drvFile[i])
		if err != nil {
			t.Fatal(err)
		}
		name := strings.SplitN(filepath.Base(c.drvFile[i]), "-", 2)[1]
		refs := []string{busyboxPath}
		if i > 0 {
			// Given before busybox, against the sorted order.
			refs = []string{c.drv[i-1], busyboxPath}
		}
		// The test's own makeStorePath agrees with Nix's path first, so
		// that the comparisons below with it mean something.
		if p := csTextPath(contents, refs, "/nix/store", name); p != c.drv[i] {
			t.Fatalf("the test's text path of %s = %s, Nix's is %s", name, p, c.drv[i])
		}
		args := []string{"add", "--text", name}
		for _, r := range refs {
			args = append(args, "--reference", r)
		}
		r := in.run(string(contents), args...)
		if r.code != 0 || strings.TrimSpace(r.stdout) != c.drv[i] {
			t.Fatalf("storefs %v: exit %d, stdout %q, stderr %q; want %s", args, r.code, r.stdout, r.stderr, c.drv[i])
		}
		// Again: the same path, nothing new.
		if r := in.run(string(contents), args...); r.code != 0 || strings.TrimSpace(r.stdout) != c.drv[i] {
			t.Fatalf("second storefs %v: exit %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
		}

		var got []map[string]any
		if err := json.Unmarshal([]byte(in.ok("path-info", "--json", c.drv[i])), &got); err != nil || len(got) != 1 {
			t.Fatalf("path-info --json %s: %v, %v", c.drv[i], got, err)
		}
		delete(got[0], "registrationTime")
		h := sha256.Sum256(contents)
		nar := csNARFile(contents)
		narHash := sha256.Sum256(nar)
		wantRefs := []any{}
		for _, r := range csSorted(refs) {
			wantRefs = append(wantRefs, r)
		}
		want := map[string]any{
			"path":       c.drv[i],
			"narHash":    "sha256-" + base64.StdEncoding.EncodeToString(narHash[:]),
			"narSize":    float64(len(nar)),
			"references": wantRefs,
			"ca":         "text:sha256:" + store.Base32Encode(h[:]),
		}
		if !reflect.DeepEqual(got[0], want) {
			t.Errorf("path-info --json %s = %v, want %v", c.drv[i], got[0], want)
		}
		// The contents are the bytes given, under the backing store.
		if b, err := os.ReadFile(filepath.Join(in.state, "store", filepath.Base(c.drv[i]))); err != nil || !bytes.Equal(b, contents) {
			t.Errorf("backing file of %s: %v, contents equal %v", c.drv[i], err, bytes.Equal(b, contents))
		}
	}
	// A .drv added as text is a derivation like any other.
	if got := strings.TrimSpace(in.ok("query", "--outputs", c.drv[2])); got != c.out[2] {
		t.Errorf("query --outputs of a .drv added with --text = %q, want %q", got, c.out[2])
	}

	t.Run("OrdinaryText", func(t *testing.T) {
		contents := []byte("echo hello from " + busyboxPath + "\n")
		want := csTextPath(contents, []string{busyboxPath}, "/nix/store", "hello.sh")
		if got := strings.TrimSpace(in.run(string(contents), "add", "--text", "hello.sh", "--reference", busyboxPath).stdout); got != want {
			t.Errorf("add --text hello.sh = %q, want %q", got, want)
		}
		// Without the reference, another path.
		noRef := csTextPath(contents, nil, "/nix/store", "hello.sh")
		if got := strings.TrimSpace(in.run(string(contents), "add", "--text", "hello.sh").stdout); got != noRef || noRef == want {
			t.Errorf("add --text hello.sh without references = %q, want %q", got, noRef)
		}
	})

	t.Run("InvalidReferenceChangesNothing", func(t *testing.T) {
		before := in.ok("path-info", "--all")
		missing := "/nix/store/00000000000000000000000000000000-missing"
		r := in.run("some text", "add", "--text", "x.txt", "--reference", missing)
		if r.code == 0 || r.stdout != "" || !strings.HasPrefix(r.stderr, "error: ") {
			t.Errorf("add --text with an invalid reference: exit %d, stdout %q, stderr %q; want an error", r.code, r.stdout, r.stderr)
		}
		r = in.run("some text", "add", "--text", "x.txt", "--reference", "/etc/passwd")
		if r.code == 0 || !strings.Contains(r.stderr, "'/etc/passwd' is not in the Nix store") {
			t.Errorf("add --text with a reference outside the store: exit %d, stderr %q", r.code, r.stderr)
		}
		if after := in.ok("path-info", "--all"); after != before {
			t.Errorf("path-info --all changed after failed adds:\n%s\nwas:\n%s", after, before)
		}
	})
}

// TestCLIStore_DeleteReferenced: deleting a path that a valid path refers
// to is refused with an error naming both, and nothing changes; deleting
// the referrer first, then the path, works.
func TestCLIStore_DeleteReferenced(t *testing.T) {
	in := newInstance(t)
	a := strings.TrimSpace(in.run("data\n", "add", "--text", "a.txt").stdout)
	bText := "see " + a + "\n"
	b := strings.TrimSpace(in.run(bText, "add", "--text", "b.txt", "--reference", a).stdout)
	if !strings.HasSuffix(a, "-a.txt") || !strings.HasSuffix(b, "-b.txt") {
		t.Fatalf("add --text gave %q and %q", a, b)
	}
	backing := func(p string) string { return filepath.Join(in.state, "store", filepath.Base(p)) }
	state := func() string { return in.ok("path-info", "--json", "--all") }
	before := state()

	t.Run("Refused", func(t *testing.T) {
		r := in.run("", "delete", a)
		if r.code != 1 || r.stdout != "" {
			t.Errorf("delete %s: exit %d, stdout %q; want exit 1", a, r.code, r.stdout)
		}
		want := "error: cannot delete path '" + a + "' since it is still alive"
		if !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, b) {
			t.Errorf("delete %s: stderr %q, want %q naming the referrer %s", a, r.stderr, want, b)
		}
		if after := state(); after != before {
			t.Errorf("path-info after the refused delete:\n%s\nwas:\n%s", after, before)
		}
		if data, err := os.ReadFile(backing(a)); err != nil || string(data) != "data\n" {
			t.Errorf("contents of %s after the refused delete: %q, %v", a, data, err)
		}
		if got := csLines(in.ok("query", "--referrers", a)); !reflect.DeepEqual(got, []string{b}) {
			t.Errorf("query --referrers %s = %q, want %s", a, got, b)
		}
	})

	t.Run("BadArgumentChangesNothing", func(t *testing.T) {
		// b is deletable, but the second argument is not valid: the
		// command fails before deleting anything.
		missing := "/nix/store/00000000000000000000000000000000-missing"
		r := in.run("", "delete", b, missing)
		if r.code != 1 || !strings.Contains(r.stderr, missing) {
			t.Errorf("delete %s %s: exit %d, stderr %q; want an error naming %s", b, missing, r.code, r.stderr, missing)
		}
		if after := state(); after != before {
			t.Errorf("path-info after the failed delete:\n%s\nwas:\n%s", after, before)
		}
		if _, err := os.Stat(backing(b)); err != nil {
			t.Errorf("contents of %s after the failed delete: %v", b, err)
		}
	})

	t.Run("ReferrerFirst", func(t *testing.T) {
		in.ok("delete", b)
		if r := in.run("", "path-info", b); r.code == 0 {
			t.Errorf("path-info %s after deleting it: exit 0, stdout %q", b, r.stdout)
		}
		if _, err := os.Lstat(backing(b)); !os.IsNotExist(err) {
			t.Errorf("contents of %s after deleting it: %v, want none", b, err)
		}
		if got := csLines(in.ok("query", "--referrers", a)); len(got) != 0 {
			t.Errorf("query --referrers %s after deleting %s = %q, want nothing", a, b, got)
		}
		in.ok("delete", a)
		if got := in.ok("path-info", "--all"); got != "" {
			t.Errorf("path-info --all after deleting both = %q, want nothing", got)
		}
		if _, err := os.Lstat(backing(a)); !os.IsNotExist(err) {
			t.Errorf("contents of %s after deleting it: %v, want none", a, err)
		}
	})

	t.Run("Together", func(t *testing.T) {
		// A path and its only referrer go in one command.
		a := strings.TrimSpace(in.run("data\n", "add", "--text", "a.txt").stdout)
		b := strings.TrimSpace(in.run(bText, "add", "--text", "b.txt", "--reference", a).stdout)
		in.ok("delete", a, b)
		if got := in.ok("path-info", "--all"); got != "" {
			t.Errorf("path-info --all after deleting both together = %q, want nothing", got)
		}
	})
}

// TestCLIStore_Hash: `hash path` and `hash file` print Nix's hashes of the
// busybox fixture, and hashes of a file that the test computes itself, in
// each format.
func TestCLIStore_Hash(t *testing.T) {
	in := newInstance(t)
	bb := csLoadBusybox(t)
	dir := busyboxDir(t)
	narDigest := csSRIDigest(t, bb.info.NARHash)

	file := filepath.Join(t.TempDir(), "greeting")
	contents := []byte("hello, store\n")
	if err := os.WriteFile(file, contents, 0o644); err != nil {
		t.Fatal(err)
	}
	fileNAR := sha256.Sum256(csNARFile(contents))

	digests := map[string]func() hash.Hash{"md5": md5.New, "sha1": sha1.New, "sha256": sha256.New, "sha512": sha512.New}
	sum := func(algo string) []byte {
		h := digests[algo]()
		h.Write(contents)
		return h.Sum(nil)
	}

	type hashCase struct {
		name string
		args []string
		want string
	}
	cases := []hashCase{
		{"PathBase16", []string{"path", dir}, hex.EncodeToString(narDigest)},
		{"PathBase32", []string{"path", "--base32", dir}, bb.narHashBase32},
		{"PathSRI", []string{"path", "--sri", dir}, bb.info.NARHash},
		{"PathBase64", []string{"path", "--base64", dir}, base64.StdEncoding.EncodeToString(narDigest)},
		{"FileBusybox", []string{"file", filepath.Join(dir, "bin", "busybox")}, bb.fileSHA256},
		{"PathOfFile", []string{"path", "--sri", file}, "sha256-" + base64.StdEncoding.EncodeToString(fileNAR[:])},
		{"Several", []string{"file", file, filepath.Join(dir, "bin", "busybox")}, hex.EncodeToString(sum("sha256")) + "\n" + bb.fileSHA256},
	}
	for _, algo := range []string{"md5", "sha1", "sha256", "sha512"} {
		d := sum(algo)
		cases = append(cases,
			hashCase{"File_" + algo + "_Base16", []string{"file", "--type", algo, file}, hex.EncodeToString(d)},
			hashCase{"File_" + algo + "_Base32", []string{"file", "--type", algo, "--base32", file}, store.Base32Encode(d)},
			hashCase{"File_" + algo + "_SRI", []string{"file", "--type", algo, "--sri", file}, algo + "-" + base64.StdEncoding.EncodeToString(d)},
		)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := strings.TrimSpace(in.ok(append([]string{"hash"}, tc.args...)...)); got != tc.want {
				t.Errorf("hash %v = %q, want %q", tc.args, got, tc.want)
			}
		})
	}
	t.Run("Missing", func(t *testing.T) {
		r := in.run("", "hash", "file", filepath.Join(t.TempDir(), "nothing"))
		if r.code != 1 || r.stdout != "" || !strings.HasPrefix(r.stderr, "error: ") {
			t.Errorf("hash file of a missing file: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
	})
}

// TestCLIStore_EnvironmentDirs: STOREFS_STATE_DIR and STOREFS_STORE_DIR
// stand in for --state-dir and --store-dir; the flags win over them.
func TestCLIStore_EnvironmentDirs(t *testing.T) {
	bb := csLoadBusybox(t)
	narDigest := csSRIDigest(t, bb.info.NARHash)
	if p := csMakeStorePath("source", narDigest, "/nix/store", "busybox"); p != busyboxPath {
		t.Fatalf("the test's source path of busybox = %s, Nix's is %s", p, busyboxPath)
	}
	dir := busyboxDir(t)

	t.Run("StateDir", func(t *testing.T) {
		in := newInstance(t)
		if err := os.WriteFile(filepath.Join(in.state, "storefs.conf"), []byte("max-jobs = 7\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		env := csEnv("STOREFS_STATE_DIR=" + in.state)
		if r := runStorefs(t, env, "", "add", dir); r.code != 0 || strings.TrimSpace(r.stdout) != busyboxPath {
			t.Fatalf("STOREFS_STATE_DIR=%s storefs add: exit %d, stdout %q, stderr %q", in.state, r.code, r.stdout, r.stderr)
		}
		// The path is in that state directory, as --state-dir sees it.
		if got := strings.TrimSpace(in.ok("path-info", "--all")); got != busyboxPath {
			t.Errorf("path-info --all of %s = %q, want %s", in.state, got, busyboxPath)
		}
		if _, err := os.Stat(filepath.Join(in.state, "store", filepath.Base(busyboxPath), "bin", "busybox")); err != nil {
			t.Errorf("backing store under STOREFS_STATE_DIR: %v", err)
		}
		// Its storefs.conf is read.
		if r := runStorefs(t, env, "", "config", "show"); !strings.Contains(r.stdout, "\nmax-jobs = 7\n") {
			t.Errorf("config show with STOREFS_STATE_DIR: exit %d, stderr %q, want max-jobs = 7 in\n%s", r.code, r.stderr, r.stdout)
		}
		// --state-dir wins over the variable.
		other := newInstance(t)
		r := runStorefs(t, env, "", "--state-dir", other.state, "path-info", "--all")
		if r.code != 0 || r.stdout != "" {
			t.Errorf("--state-dir %s with STOREFS_STATE_DIR=%s: path-info --all exit %d, stdout %q; want the empty store", other.state, in.state, r.code, r.stdout)
		}
	})

	t.Run("StoreDir", func(t *testing.T) {
		in := newInstance(t)
		storeDir := filepath.Join(t.TempDir(), "logical", "store")
		want := csMakeStorePath("source", narDigest, storeDir, "busybox")
		in.env = csEnv("STOREFS_STORE_DIR=" + storeDir)
		if got := strings.TrimSpace(in.ok("add", dir)); got != want {
			t.Fatalf("STOREFS_STORE_DIR=%s storefs add = %q, want %q", storeDir, got, want)
		}
		text := []byte("points at " + want + "\n")
		wantText := csTextPath(text, []string{want}, storeDir, "t.txt")
		if got := strings.TrimSpace(in.run(string(text), "add", "--text", "t.txt", "--reference", want).stdout); got != wantText {
			t.Errorf("add --text under %s = %q, want %q", storeDir, got, wantText)
		}
		if got := csLines(in.ok("query", "--references", wantText)); !reflect.DeepEqual(got, []string{want}) {
			t.Errorf("query --references %s = %q, want %s", wantText, got, want)
		}
		// A /nix/store path is not in this store.
		if r := in.run("", "path-info", busyboxPath); r.code != 1 || !strings.Contains(r.stderr, "is not in the Nix store") {
			t.Errorf("path-info %s under STOREFS_STORE_DIR: exit %d, stderr %q", busyboxPath, r.code, r.stderr)
		}
		// --store-dir wins over the variable, and the database refuses
		// a store directory other than its own.
		r := in.run("", "--store-dir", "/nix/store", "path-info", "--all")
		if msg := "database is for store directory " + storeDir + ", not /nix/store"; r.code != 1 || !strings.Contains(r.stderr, msg) {
			t.Errorf("--store-dir /nix/store on a store made for %s: exit %d, stderr %q; want %q", storeDir, r.code, r.stderr, msg)
		}
		in.env = csEnv()
		if r := in.run("", "path-info", "--all"); r.code != 1 || !strings.Contains(r.stderr, "database is for store directory "+storeDir) {
			t.Errorf("default store directory on a store made for %s: exit %d, stderr %q", storeDir, r.code, r.stderr)
		}
		in.env = csEnv("STOREFS_STORE_DIR=relative/store")
		if r := in.run("", "path-info", "--all"); r.code != 1 || !strings.Contains(r.stderr, "--store-dir") {
			t.Errorf("STOREFS_STORE_DIR=relative/store: exit %d, stderr %q; want a --store-dir error", r.code, r.stderr)
		}
	})
}

// TestCLIStore_SettingsFile: <state-dir>/storefs.conf is read, --option
// overrides it, and settings that storefs does not implement or does not
// know get their warnings.
func TestCLIStore_SettingsFile(t *testing.T) {
	in := newInstance(t)
	conf := filepath.Join(in.state, "storefs.conf")
	defaults := in.ok("config", "show")
	for _, l := range []string{"keep-outputs = false", "max-jobs = 1", "sandbox-paths = "} {
		if !strings.Contains(defaults, "\n"+l+"\n") {
			t.Fatalf("config show without settings lacks %q:\n%s", l, defaults)
		}
	}
	appendConf := func(s string) {
		t.Helper()
		f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	appendConf("# comment line\nkeep-outputs = true   # trailing comment\n  max-jobs = 3\nsandbox-paths = /a\n")

	t.Run("FileRead", func(t *testing.T) {
		r := in.run("", "config", "show")
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("config show: exit %d, stderr %q", r.code, r.stderr)
		}
		for _, l := range []string{"keep-outputs = true", "max-jobs = 3", "sandbox-paths = /a"} {
			if !strings.Contains(r.stdout, "\n"+l+"\n") {
				t.Errorf("config show lacks %q:\n%s", l, r.stdout)
			}
		}
	})

	t.Run("OptionOverrides", func(t *testing.T) {
		out := in.ok("--option", "max-jobs", "5", "--option", "extra-sandbox-paths", "/b", "config", "show")
		for _, l := range []string{"keep-outputs = true", "max-jobs = 5", "sandbox-paths = /a /b"} {
			if !strings.Contains(out, "\n"+l+"\n") {
				t.Errorf("config show with --option lacks %q:\n%s", l, out)
			}
		}
	})

	t.Run("Unimplemented", func(t *testing.T) {
		in := newInstance(t)
		conf := filepath.Join(in.state, "storefs.conf")
		b, _ := os.ReadFile(conf)
		os.WriteFile(conf, append(b, "auto-optimise-store = true\n"...), 0o644)
		r := in.run("", "--option", "filter-syscalls", "false", "config", "show")
		if r.code != 0 {
			t.Fatalf("config show: exit %d, stderr %q", r.code, r.stderr)
		}
		for _, w := range []string{
			"warning: ignoring setting 'auto-optimise-store' in '" + conf + "': storefs does not implement it yet\n",
			"warning: ignoring setting 'filter-syscalls': storefs does not implement it yet\n",
		} {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("stderr %q lacks %q", r.stderr, w)
			}
		}
		if strings.Contains(r.stderr, "unknown setting") {
			t.Errorf("a known Nix setting is called unknown: %q", r.stderr)
		}
	})

	t.Run("Unknown", func(t *testing.T) {
		in := newInstance(t)
		conf := filepath.Join(in.state, "storefs.conf")
		b, _ := os.ReadFile(conf)
		os.WriteFile(conf, append(b, "no-such-setting = 1\n"...), 0o644)
		r := in.run("", "--option", "bogus-setting", "x", "config", "show")
		if r.code != 0 {
			t.Fatalf("config show: exit %d, stderr %q", r.code, r.stderr)
		}
		for _, w := range []string{
			"warning: unknown setting 'no-such-setting' in '" + conf + "'\n",
			"warning: unknown setting 'bogus-setting'\n",
		} {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("stderr %q lacks %q", r.stderr, w)
			}
		}
		if strings.Contains(r.stdout, "no-such-setting") || strings.Contains(r.stdout, "bogus-setting") {
			t.Errorf("config show lists an unknown setting:\n%s", r.stdout)
		}
		if strings.Contains(r.stderr, "does not implement") {
			t.Errorf("an unknown setting is called unimplemented: %q", r.stderr)
		}
	})

	t.Run("SyntaxError", func(t *testing.T) {
		in := newInstance(t)
		conf := filepath.Join(in.state, "storefs.conf")
		b, _ := os.ReadFile(conf)
		os.WriteFile(conf, append(b, "max-jobs 3\n"...), 0o644)
		r := in.run("", "config", "show")
		// Nix's words are "illegal" or "syntax error in" configuration
		// line '<line>' in '<file>'.
		want := "configuration line 'max-jobs 3' in '" + conf + "'"
		if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, want) {
			t.Errorf("config show with a bad line: exit %d, stdout %q, stderr %q; want %q", r.code, r.stdout, r.stderr, want)
		}
	})
}
