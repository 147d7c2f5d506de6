package cache_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/storefs/storefs/store/cache"
)

func TestOpen(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name    string
		url     string
		wantURL string
		wantErr string
	}{
		{"File", "file://" + fixtureCacheDir(t, "cache-xz"), "file://" + fixtureCacheDir(t, "cache-xz"), ""},
		{"FileLocalhost", "file://localhost" + fixtureCacheDir(t, "cache-xz") + "?priority=5", "file://" + fixtureCacheDir(t, "cache-xz"), ""},
		{"HTTP", "http://cache.example.org/sub/?priority=5&want-mass-query=true", "http://cache.example.org/sub", ""},
		{"HTTPS", "https://cache.example.org", "https://cache.example.org", ""},
		{"FileHost", "file://host/dir", "", "file:///"},
		{"FileRelative", "file:dir", "", "file:///"},
		{"Scheme", "ssh://host", "", "don't know how to open"},
		{"Plain", "/tmp/cache", "", "don't know how to open"},
		{"Compression", "file:///tmp/x?compression=br", "", "compression"},
		{"CompressionReadOnly", "file:///tmp/x?compression=bzip2", "", "reading only"},
		{"Priority", "file:///tmp/x?priority=high", "", "invalid value 'high' for 'priority'"},
		{"SecretKeyMissing", "file:///tmp/x?secret-key=/nonexistent/key", "", "reading secret key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := cache.Open(tc.url, nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("Open(%s) = %v, want an error containing %q", tc.url, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open(%s) = %v", tc.url, err)
			}
			if c.URL() != tc.wantURL {
				t.Errorf("URL() = %s, want %s", c.URL(), tc.wantURL)
			}
		})
	}
	t.Run("PriorityOverride", func(t *testing.T) {
		c, err := cache.Open("file://"+fixtureCacheDir(t, "cache-xz")+"?priority=5&want-mass-query=1", nil)
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(ctx)
		if err != nil || info.Priority != 5 || !info.WantMassQuery {
			t.Errorf("Info() = %+v, %v; want priority 5 and mass query", info, err)
		}
	})
	t.Run("IgnoredParameters", func(t *testing.T) {
		var logs bytes.Buffer
		opts := &cache.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}
		if _, err := cache.Open("file:///tmp/x?parallel-compression=true&frobnicate=1", opts); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(logs.String(), "param=parallel-compression") || !strings.Contains(logs.String(), "unknown store URL parameter") {
			t.Errorf("logs =\n%s\nwant a warning for each parameter", logs.String())
		}
	})
	t.Run("SecretKey", func(t *testing.T) {
		key, _ := cache.GenerateKey("k-1", nil)
		file := filepath.Join(t.TempDir(), "key")
		os.WriteFile(file, []byte(key.String()+"\n"), 0o600)
		dir := t.TempDir()
		c, err := cache.Open("file://"+dir+"?secret-key="+file, nil)
		if err != nil {
			t.Fatal(err)
		}
		ni := &cache.NARInfo{StorePath: hostilePath, URL: "nar/x.nar", Compression: "none", NARHash: fixtureNARInfos(t, "cache-xz")["/nix/store/023z915q4il2a1ignka406l584flfff7-chain-20"].NARHash, NARSize: 8}
		if err := c.PutNARInfo(ctx, ni); err != nil {
			t.Fatal(err)
		}
		back, err := c.NARInfo(ctx, hostilePath.HashPart())
		if err != nil || back.ValidSignatures(cache.PublicKeys{"k-1": key.PublicKey().Key}) != 1 {
			t.Errorf("NARInfo() = %v, %v; want signed by k-1", back, err)
		}
	})
}
