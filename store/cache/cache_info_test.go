package cache_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/storefs/storefs/store/cache"
)

func TestParseInfo(t *testing.T) {
	cases := []struct {
		name string
		data string
		want cache.Info
	}{
		{"nix-copy", "StoreDir: /nix/store\n", cache.Info{StoreDir: "/nix/store"}},
		{"cache.nixos.org", "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n", cache.Info{StoreDir: "/nix/store", WantMassQuery: true, Priority: 40}},
		{"lenient", "junk line\nStoreDir:   /gnu/store  \nWantMassQuery: 0\nFeatures: x\n", cache.Info{StoreDir: "/gnu/store"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cache.ParseInfo([]byte(tc.data))
			if err != nil || *got != tc.want {
				t.Fatalf("ParseInfo() = %+v, %v; want %+v", got, err, tc.want)
			}
			if tc.name != "lenient" && got.String() != tc.data {
				t.Errorf("String() = %q, want %q", got.String(), tc.data)
			}
		})
	}
	if _, err := cache.ParseInfo([]byte("Priority: high\n")); err == nil {
		t.Errorf("ParseInfo(Priority: high) = nil, want an error")
	}
}

func TestFileCache_Info(t *testing.T) {
	ctx := context.Background()
	t.Run("Fixture", func(t *testing.T) {
		info, err := openFileCache(t, fixtureCacheDir(t, "cache-xz"), nil).Info(ctx)
		if err != nil || info.StoreDir != "/nix/store" {
			t.Errorf("Info() = %+v, %v; want /nix/store", info, err)
		}
	})
	t.Run("Overrides", func(t *testing.T) {
		no := false
		info, err := openFileCache(t, fixtureCacheDir(t, "cache-xz"), &cache.Options{Priority: 7, WantMassQuery: &no}).Info(ctx)
		if err != nil || info.Priority != 7 || info.WantMassQuery {
			t.Errorf("Info() = %+v, %v; want priority 7", info, err)
		}
	})
	t.Run("OtherStoreDir", func(t *testing.T) {
		_, err := openFileCache(t, fixtureCacheDir(t, "cache-xz"), &cache.Options{StoreDir: "/gnu/store"}).Info(ctx)
		if err == nil || !strings.Contains(err.Error(), "is for Nix stores with prefix '/nix/store', not '/gnu/store'") {
			t.Errorf("Info() = %v, want a store directory mismatch", err)
		}
	})
	t.Run("Missing", func(t *testing.T) {
		_, err := openFileCache(t, filepath.Join(t.TempDir(), "none"), nil).Info(ctx)
		if !errors.Is(err, cache.ErrNotFound) {
			t.Errorf("Info() = %v, want ErrNotFound", err)
		}
	})
	t.Run("Put", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "new")
		c := openFileCache(t, dir, nil)
		if err := c.PutInfo(ctx, &cache.Info{StoreDir: "/nix/store", Priority: 20}); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(dir, "nix-cache-info"))
		if err != nil || string(data) != "StoreDir: /nix/store\nPriority: 20\n" {
			t.Errorf("nix-cache-info = %q, %v", data, err)
		}
	})
}
