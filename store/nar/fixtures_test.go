package nar_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/storefs/storefs/store"
)

// fixtures is where the Nix 2.8 fixtures are, relative to this package:
// the repository's clone has ../shared beside it.
const fixtures = "../../../shared/fixtures/nix-2.8"

func TestFixtures_NixCache(t *testing.T) {
	cache := filepath.Join(fixtures, "cache-zstd")
	infos, err := filepath.Glob(filepath.Join(cache, "*.narinfo"))
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) == 0 {
		t.Fatalf("no narinfo files in %s: the Nix fixtures belong in ../shared beside the repository", cache)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	for _, info := range infos {
		t.Run(strings.TrimSuffix(filepath.Base(info), ".narinfo"), func(t *testing.T) {
			ni := readNARInfo(t, info)
			compressed, err := os.ReadFile(filepath.Join(cache, ni["URL"]))
			if err != nil {
				t.Fatal(err)
			}
			data, err := dec.DecodeAll(compressed, nil)
			if err != nil {
				t.Fatalf("decompressing %s: %v", ni["URL"], err)
			}
			if got := strconv.Itoa(len(data)); got != ni["NarSize"] {
				t.Fatalf("size of %s = %s, want NarSize %s", ni["URL"], got, ni["NarSize"])
			}
			want, err := store.ParseHash(ni["NarHash"])
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(data)
			if got := (store.Hash{Algo: store.SHA256, Digest: sum[:]}); !got.Equal(want) {
				t.Fatalf("hash of %s = %s, want NarHash %s", ni["URL"], got, want)
			}
			out := restore(t, data)
			if got := dump(t, out); !bytes.Equal(got, data) {
				t.Errorf("Dump(Restore(%s)) of %s: %s", ni["URL"], ni["StorePath"], firstDiff(got, data))
			}
		})
	}
}

// readNARInfo returns the fields of a narinfo file.
func readNARInfo(t testing.TB, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fields := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			t.Fatalf("%s: line %q is not \"Key: value\"", path, sc.Text())
		}
		fields[k] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"StorePath", "URL", "NarHash", "NarSize"} {
		if fields[k] == "" {
			t.Fatalf("%s has no %s", path, k)
		}
	}
	return fields
}
