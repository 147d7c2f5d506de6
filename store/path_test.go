package store_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/storefs/storefs/store"
)

func TestDir_Parse(t *testing.T) {
	d := store.DefaultDir
	good := []string{
		"/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox",
		"/nix/store/ylidkad964ccmaay0qrd9zdywj84gw6f-trivial.drv",
		"/nix/store/00000000000000000000000000000000-a+b-c.d_e?f=g",
		"/nix/store/00000000000000000000000000000000-" + strings.Repeat("x", store.MaxNameLen),
	}
	for _, s := range good {
		p, err := d.Parse(s)
		if err != nil {
			t.Errorf("Parse(%q) = %v, want nil", s, err)
			continue
		}
		if string(p.Dir())+"/"+p.HashPart()+"-"+p.Name() != s {
			t.Errorf("parts of %q = %s %s %s", s, p.Dir(), p.HashPart(), p.Name())
		}
	}
	bad := []string{
		"",
		"/nix/store",
		"/nix/store/",
		"/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz",
		"/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-",
		"/nix/store/71fc7s32zl20dc955bhghy5dvalm7nde-busybox", // 'e' not base32
		"/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz_busybox",
		"/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-.hidden",
		"/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-a b",
		"/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-a/b",
		"/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox/bin",
		"/other/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox",
		"/nix/store/00000000000000000000000000000000-" + strings.Repeat("x", store.MaxNameLen+1),
	}
	for _, s := range bad {
		if p, err := d.Parse(s); err == nil {
			t.Errorf("Parse(%q) = %s, want an error", s, p)
		} else if !errors.Is(err, store.ErrInvalidPath) {
			t.Errorf("Parse(%q) = %v, want ErrInvalidPath", s, err)
		}
	}
}

func TestDir_ToStorePath(t *testing.T) {
	p, err := store.DefaultDir.ToStorePath("/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox/bin/busybox")
	if err != nil || p != "/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox" {
		t.Errorf("ToStorePath = %s, %v", p, err)
	}
}

func TestDir_MakeFixedOutputPath(t *testing.T) {
	// fod-flat-sha256 of the fixtures: outputHash of "hello fixed-output\n".
	h, err := store.ParseHashAny("sha256-hQ1DksDDMhQ9YNWRe2JLu5BFc7TML8+hD1p7P6awDxA=", store.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	// fod-wrong-hash: Nix registered the content under this path.
	p, err := store.DefaultDir.MakeFixedOutputPath("fod-wrong.txt", false, h, nil, false)
	if err != nil || p != "/nix/store/nsg3wf850p8xd7ngng276f7r8ilgg310-fod-wrong.txt" {
		t.Errorf("MakeFixedOutputPath = %s, %v; want /nix/store/nsg3wf850p8xd7ngng276f7r8ilgg310-fod-wrong.txt", p, err)
	}
}
