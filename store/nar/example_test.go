package nar_test

import (
	"bytes"
	"fmt"
	"io"
	"log"

	"github.com/storefs/storefs/store/nar"
	"github.com/storefs/storefs/store/nar/nartest"
)

func ExampleReader() {
	data := nartest.NAR(nartest.Dir(
		nartest.E("bin", nartest.Dir(nartest.E("hello", nartest.Executable("#!/bin/sh\n")))),
		nartest.E("lib", nartest.Symlink("/nix/store/foo/lib")),
	))
	r := nar.NewReader(bytes.NewReader(data))
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%q %s %d %q\n", h.Path, h.Type, h.Size, h.LinkTarget)
	}
	// Output:
	// "" directory 0 ""
	// "bin" directory 0 ""
	// "bin/hello" regular 10 ""
	// "lib" symlink 0 "/nix/store/foo/lib"
}
