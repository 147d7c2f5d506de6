package nar_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/klauspost/compress/zstd"

	"github.com/storefs/storefs/store/nar"
	"github.com/storefs/storefs/store/nar/nartest"
	"github.com/storefs/storefs/store/storetest"
)

// fuzzSeeds returns the valid and malicious cases, and NARs that Nix
// wrote (the fixture cache's), small enough for the fuzzer to mutate
// quickly.
func fuzzSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	for _, tc := range append(nartest.Valid(), nartest.Malicious()...) {
		if len(tc.Data) <= 8<<10 {
			seeds = append(seeds, tc.Data)
		}
	}
	return append(seeds, fixtureNARs(t, 8<<10)...)
}

// fixtureNARs returns up to 40 NARs of the fixtures' zstd cache that are
// at most max bytes long (most of the cache is 200 outputs of one shape).
func fixtureNARs(t testing.TB, max int) [][]byte {
	t.Helper()
	dir := filepath.Join(storetest.FixturesDir(t), "cache-zstd", "nar")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	var nars [][]byte
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".nar.zst") {
			continue
		}
		if fi, err := e.Info(); err != nil || fi.Size() > int64(max) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		nar, err := dec.DecodeAll(data, nil)
		if err != nil {
			t.Fatalf("decompressing %s: %v", e.Name(), err)
		}
		if len(nar) <= max {
			nars = append(nars, nar)
		}
		if len(nars) == 40 {
			break
		}
	}
	return nars
}

// FuzzRestore checks Restore's promises on any input: it writes nothing
// outside its target; on failure the target does not exist; on success the
// target dumps to exactly the input, as a valid NAR is canonical.
func FuzzRestore(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	escapeAbsExisted := exists(f, nartest.EscapeAbs)
	f.Fuzz(func(t *testing.T, data []byte) {
		parent, target := newTarget(t)
		err := nar.Restore(bytes.NewReader(data), target)
		if !escapeAbsExisted && exists(t, nartest.EscapeAbs) {
			os.RemoveAll(nartest.EscapeAbs)
			t.Fatalf("Restore created %s", nartest.EscapeAbs)
		}
		if err != nil {
			var fe *nar.FormatError
			if !errors.As(err, &fe) {
				t.Errorf("Restore = %v, want a *nar.FormatError", err)
			}
			checkNoTarget(t, parent, target)
			return
		}
		if got := listDir(t, parent); strings.Join(got, " ") != "out sentinel" {
			t.Errorf("after Restore, %s holds %q, want out and sentinel", parent, got)
		}
		if got := listDir(t, filepath.Join(parent, "sentinel")); strings.Join(got, " ") != "keep" {
			t.Errorf("after Restore, the sentinel holds %q, want only keep", got)
		}
		if got := dump(t, target); !bytes.Equal(got, data) {
			t.Errorf("Dump(Restore(data)) != data: %s", firstDiff(got, data))
		}
	})
}

// FuzzReader checks the Reader on any input, split into reads in any of
// several ways: every error is a *FormatError and final; every path is
// made of valid names; contents have their declared size; and when the
// Reader reaches io.EOF, encoding what it returned gives the input up to
// where the archive ended.
func FuzzReader(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(uint8(0), s)
	}
	f.Fuzz(func(t *testing.T, split uint8, data []byte) {
		var src io.Reader = bytes.NewReader(data)
		switch split % 4 {
		case 1:
			src = iotest.OneByteReader(src)
		case 2:
			src = iotest.HalfReader(src)
		case 3:
			src = iotest.DataErrReader(src)
		}
		ents, err := readAll(src)
		if err != nil {
			var fe *nar.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("reading = %v, want a *nar.FormatError", err)
			}
			return
		}
		for _, e := range ents {
			if e.Path == "" {
				continue
			}
			for _, name := range strings.Split(e.Path, "/") {
				if name == "" || name == "." || name == ".." || strings.IndexByte(name, 0) >= 0 || len(name) > nar.MaxNameLen {
					t.Errorf("Reader returned path %q with the bad name %q", e.Path, name)
				}
			}
		}
		if enc := encode(ents); !bytes.HasPrefix(data, enc) {
			t.Errorf("encoding the nodes read is not a prefix of the input: %s", firstDiff(enc, data[:min(len(data), len(enc))]))
		}
	})
}
