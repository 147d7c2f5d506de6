package cache_test

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"io"
	"strings"
	"testing"

	"github.com/storefs/storefs/store/cache"
)

func TestCompressor_RoundTrip(t *testing.T) {
	random := make([]byte, 300<<10)
	rand.Read(random)
	inputs := map[string][]byte{
		"empty":    nil,
		"text":     bytes.Repeat([]byte("nix-archive-1 hello world\n"), 20000),
		"random":   random,
		"one-byte": {0},
	}
	for _, method := range []string{"none", "xz", "zstd"} {
		for name, data := range inputs {
			t.Run(method+"/"+name, func(t *testing.T) {
				var buf bytes.Buffer
				w, err := cache.NewCompressor(method, 0, &buf)
				if err != nil {
					t.Fatalf("NewCompressor(%s) = %v", method, err)
				}
				if _, err := w.Write(data); err != nil {
					t.Fatal(err)
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				r, err := cache.NewDecompressor(method, &buf)
				if err != nil {
					t.Fatalf("NewDecompressor(%s) = %v", method, err)
				}
				defer r.Close()
				got, err := io.ReadAll(r)
				if err != nil {
					t.Fatalf("reading %s = %v", method, err)
				}
				if !bytes.Equal(got, data) {
					t.Errorf("%s round trip gave %d bytes, want the %d written", method, len(got), len(data))
				}
			})
		}
	}
}

// helloBzip2 is "hello bzip2\n" compressed by bzip2(1).
var helloBzip2 = []byte{
	0x42, 0x5a, 0x68, 0x39, 0x31, 0x41, 0x59, 0x26, 0x53, 0x59, 0xab, 0x6b,
	0xa1, 0xf1, 0x00, 0x00, 0x02, 0xd9, 0x80, 0x00, 0x10, 0x40, 0x00, 0x10,
	0x00, 0x12, 0x64, 0xc0, 0x10, 0x20, 0x00, 0x31, 0x00, 0xd3, 0x4d, 0x04,
	0x00, 0x1e, 0xa3, 0xef, 0x4e, 0x51, 0xa2, 0x07, 0x8b, 0xb9, 0x22, 0x9c,
	0x28, 0x48, 0x55, 0xb5, 0xd0, 0xf8, 0x80,
}

func TestNewDecompressor_ReadOnlyMethods(t *testing.T) {
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write([]byte("hello gzip\n"))
	w.Close()
	cases := []struct {
		method string
		data   []byte
		want   string
	}{
		{"bzip2", helloBzip2, "hello bzip2\n"},
		{"gzip", gz.Bytes(), "hello gzip\n"},
	}
	for _, tc := range cases {
		t.Run(tc.method, func(t *testing.T) {
			r, err := cache.NewDecompressor(tc.method, bytes.NewReader(tc.data))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil || string(got) != tc.want {
				t.Errorf("reading %s = %q, %v; want %q", tc.method, got, err, tc.want)
			}
			if _, err := cache.NewCompressor(tc.method, 0, io.Discard); err == nil {
				t.Errorf("NewCompressor(%s) = nil, want an error: it is read-only", tc.method)
			}
		})
	}
}

func TestNewDecompressor_Errors(t *testing.T) {
	if _, err := cache.NewDecompressor("br", strings.NewReader("")); err == nil {
		t.Errorf("NewDecompressor(br) = nil, want an error")
	}
	for _, method := range []string{"xz", "zstd", "bzip2", "gzip"} {
		t.Run(method, func(t *testing.T) {
			r, err := cache.NewDecompressor(method, strings.NewReader("this is not compressed data at all"))
			if err != nil {
				return
			}
			if _, err := io.ReadAll(r); err == nil || !strings.Contains(err.Error(), "decompressing") {
				t.Errorf("reading garbage as %s = %v, want a decompressing error", method, err)
			}
		})
	}
}
