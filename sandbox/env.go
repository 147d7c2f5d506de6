package sandbox

import (
	"sort"
	"strconv"
)

// homelessShelter is HOME for every build: a path that does not exist, so
// that tools looking for dotfiles find none instead of reading /etc/passwd
// (Nix's choice; unsandboxed builds must not create it either).
const homelessShelter = "/homeless-shelter"

// builderEnv returns the builder's environment as sorted "NAME=value"
// strings, built in the order of Nix 2.8's initEnv, so that later
// assignments win exactly as there:
//
//  1. PATH, HOME, NIX_STORE and NIX_BUILD_CORES, which the derivation may
//     override;
//  2. the derivation's own variables;
//  3. NIX_BUILD_TOP, TMPDIR, TEMPDIR, TMP, TEMP and PWD, all the build
//     directory (buildTop), which it may not;
//  4. for fixed-output derivations NIX_OUTPUT_CHECKED=1 and the impure
//     variables;
//  5. NIX_LOG_FD=2 and TERM=xterm-256color.
func builderEnv(s *Spec, buildTop string) []string {
	env := make(map[string]string, len(s.Env)+16)
	// Shells set a default PATH when it is unset; a dummy value keeps
	// builds from finding host tools by accident.
	env["PATH"] = "/path-not-set"
	env["HOME"] = homelessShelter
	env["NIX_STORE"] = s.StoreDir
	env["NIX_BUILD_CORES"] = strconv.Itoa(s.Cores)
	for k, v := range s.Env {
		env[k] = v
	}
	env["NIX_BUILD_TOP"] = buildTop
	for _, k := range []string{"TMPDIR", "TEMPDIR", "TMP", "TEMP"} {
		env[k] = buildTop
	}
	// An explicit PWD, because some libcs cannot find the working
	// directory of a chroot'ed process from "..".
	env["PWD"] = buildTop
	if s.FixedOutput {
		// Tells old fetchurl implementations that Nix checks the hash.
		env["NIX_OUTPUT_CHECKED"] = "1"
		for k, v := range s.ImpureEnv {
			env[k] = v
		}
	}
	env["NIX_LOG_FD"] = "2"
	env["TERM"] = "xterm-256color"

	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	// Sorted by name, like the std::map Nix builds envp from.
	sort.Slice(out, func(i, j int) bool { return envName(out[i]) < envName(out[j]) })
	return out
}

// envName returns the name part of a "NAME=value" string.
func envName(kv string) string {
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' {
			return kv[:i]
		}
	}
	return kv
}
