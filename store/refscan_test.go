package store_test

import (
	"bytes"
	"math/rand"
	"sort"
	"testing"

	"github.com/storefs/storefs/store"
)

func TestRefScanner_FindsAcrossWrites(t *testing.T) {
	a := "71fc7s32zl20dc955bhghy5dvalm7ndz"
	b := "ylidkad964ccmaay0qrd9zdywj84gw6f"
	c := "8z3rv77c71xvmyyijyry9760g7fbghah" // not in the data
	rng := rand.New(rand.NewSource(1))
	var data bytes.Buffer
	for i := 0; i < 5000; i++ {
		data.WriteByte(byte(rng.Intn(256)))
	}
	data.WriteString("/nix/store/" + a + "-busybox/bin/sh\x00")
	for i := 0; i < 3000; i++ {
		data.WriteByte("0123456789abcdfghijklmnpqrsvwxyz"[rng.Intn(32)])
	}
	data.WriteString(b)
	data.WriteString("xyz")
	for _, chunk := range []int{1, 7, 31, 32, 33, 4096, data.Len()} {
		s := store.NewRefScanner([]string{a, b, c})
		buf := data.Bytes()
		for len(buf) > 0 {
			n := min(chunk, len(buf))
			s.Write(buf[:n])
			buf = buf[n:]
		}
		var got []string
		for h := range s.Found() {
			got = append(got, h)
		}
		sort.Strings(got)
		want := []string{a, b}
		sort.Strings(want)
		if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
			t.Errorf("chunk %d: Found() = %v, want %v", chunk, got, want)
		}
	}
}

func BenchmarkRefScanner(b *testing.B) {
	rng := rand.New(rand.NewSource(1))
	data := make([]byte, 16<<20)
	rng.Read(data)
	hashes := make([]string, 100)
	for i := range hashes {
		hashes[i] = store.Base32Encode([]byte{byte(i), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19})
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		s := store.NewRefScanner(hashes)
		s.Write(data)
	}
}
