//go:build cgo

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	seccomp "github.com/seccomp/libseccomp-golang"
)

// TestGenerate_UpToDate checks that the committed programs are what this
// generator makes, so that a policy change cannot be committed without
// regenerating. Another libseccomp version may emit different (equivalent)
// code, so the check needs the version the files were made with.
func TestGenerate_UpToDate(t *testing.T) {
	major, minor, micro := seccomp.GetLibraryVersion()
	version := fmt.Sprintf("libseccomp %d.%d.%d;", major, minor, micro)
	for _, tgt := range targets {
		t.Run(tgt.goarch, func(t *testing.T) {
			name := filepath.Join("..", "..", fileName(tgt))
			committed, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(committed, []byte(version)) {
				t.Skipf("%s was not generated with %s", name, version)
			}
			got, err := generate(tgt)
			if err != nil {
				t.Fatalf("generate() = %v, want nil", err)
			}
			if !bytes.Equal(got, committed) {
				t.Errorf("%s is out of date: run go generate in the sandbox directory", name)
			}
		})
	}
}
