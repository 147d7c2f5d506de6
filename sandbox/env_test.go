package sandbox

import (
	"strings"
	"testing"
)

func TestBuilderEnv(t *testing.T) {
	spec := &Spec{
		StoreDir: "/nix/store",
		Cores:    4,
		Env: map[string]string{
			"HOME":    "/mine",   // may override the defaults
			"TMPDIR":  "/mine",   // may not override the build directory
			"TERM":    "vt100",   // nor TERM
			"builder": "/bin/sh", // passes through
		},
		FixedOutput: true,
		ImpureEnv:   map[string]string{"http_proxy": "p", "TERM": "impure"},
	}
	got := strings.Join(builderEnv(spec, "/build"), "\n")
	want := strings.Join([]string{
		"HOME=/mine",
		"NIX_BUILD_CORES=4",
		"NIX_BUILD_TOP=/build",
		"NIX_LOG_FD=2",
		"NIX_OUTPUT_CHECKED=1",
		"NIX_STORE=/nix/store",
		"PATH=/path-not-set",
		"PWD=/build",
		"TEMP=/build",
		"TEMPDIR=/build",
		"TERM=xterm-256color",
		"TMP=/build",
		"TMPDIR=/build",
		"builder=/bin/sh",
		"http_proxy=p",
	}, "\n")
	if got != want {
		t.Errorf("builderEnv() =\n%s\nwant\n%s", got, want)
	}
}

func TestBuilderEnv_NotFixedOutput(t *testing.T) {
	spec := &Spec{StoreDir: "/s", ImpureEnv: map[string]string{"http_proxy": "p"}}
	for _, kv := range builderEnv(spec, "/b") {
		if strings.HasPrefix(kv, "http_proxy=") || strings.HasPrefix(kv, "NIX_OUTPUT_CHECKED=") {
			t.Errorf("builderEnv() has %s for a derivation that is not fixed-output", kv)
		}
	}
}
