// Command sfbench is storefs's benchmark harness (`make bench`): it
// measures each workload with storefs and with its baseline alternately,
// in the same run, and reports the ratios (see bench/README.md).
//
// Usage:
//
//	sfbench run [-storefs bin/storefs] [-out bench/out]   the whole harness
//	sfbench narscan DIR                                   helpers that the harness
//	sfbench sha256files DIR                               runs as subprocesses, so
//	sfbench zstdsha FILE                                  that each is timed as a
//	sfbench stampede …                                    process of its own
//
// BENCH_QUICK=1 makes a smoke run (2 pairs, smaller sizes); BENCH_PAIRS=N
// sets the number of pairs; BENCH_WORK=DIR keeps the work directory there
// (default: a new directory under /var/tmp, removed at the end);
// BENCH_ONLY=id,id runs only some workloads.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: sfbench run|narscan|sha256files|zstdsha|stampede …")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = cmdRun(os.Args[2:])
	case "narscan":
		err = cmdNARScan(os.Args[2:])
	case "sha256files":
		err = cmdSHA256Files(os.Args[2:])
	case "zstdsha":
		err = cmdZstdSHA(os.Args[2:])
	case "stampede":
		err = cmdStampede(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "sfbench: %v\n", err)
		os.Exit(1)
	}
}
