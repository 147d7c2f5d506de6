package main

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// setting is one nix.conf-style setting storefs knows.
type setting struct {
	name string
	// def is the default as nix.conf text; a func computes it at run time.
	def func() string
	// implemented is false for Nix settings storefs accepts but ignores.
	implemented bool
}

func constant(s string) func() string { return func() string { return s } }

// knownSettings lists the settings with Nix 2.8's names and defaults,
// except that substituters is empty (storefs assumes no network).
var knownSettings = []setting{
	{"allow-new-privileges", constant("false"), false},
	{"auto-optimise-store", constant("false"), false},
	{"build-users-group", constant(""), false},
	{"cancel-orphaned-builds", constant("false"), true},
	{"connect-timeout", constant("0"), true},
	{"cores", func() string { return strconv.Itoa(runtime.NumCPU()) }, true},
	{"diff-hook", constant(""), true},
	{"download-attempts", constant("5"), true},
	{"extra-platforms", constant(""), true},
	{"fallback", constant("false"), true},
	{"filter-syscalls", constant("true"), false},
	{"fsync-metadata", constant("true"), false},
	{"hashed-mirrors", constant(""), true},
	{"id-count", constant("8388608"), true},
	{"impersonate-linux-26", constant("false"), true},
	{"keep-derivations", constant("true"), true},
	{"keep-failed", constant("false"), true},
	{"keep-going", constant("false"), true},
	{"keep-outputs", constant("false"), true},
	{"log-lines", constant("10"), true},
	{"max-build-log-size", constant("0"), true},
	{"max-free", constant(strconv.FormatInt(1<<63-1, 10)), true},
	{"max-jobs", constant("1"), true},
	{"max-silent-time", constant("0"), true},
	{"max-substitution-jobs", constant("16"), true},
	{"min-free", constant("0"), true},
	{"narinfo-cache-negative-ttl", constant("3600"), true},
	{"narinfo-cache-positive-ttl", constant("2592000"), true},
	{"netrc-file", constant("/etc/nix/netrc"), true},
	{"post-build-hook", constant(""), true},
	{"pre-build-hook", constant(""), true},
	{"require-sigs", constant("true"), true},
	{"run-diff-hook", constant("false"), true},
	{"sandbox", constant("true"), true},
	{"sandbox-fallback", constant("true"), false},
	{"sandbox-paths", constant(""), true},
	{"start-id", constant("872415232"), true},
	{"substituters", constant(""), true},
	{"system", constant("x86_64-linux"), true},
	{"system-features", defaultSystemFeatures, true},
	{"timeout", constant("0"), true},
	{"trusted-public-keys", constant(""), true},
}

// defaultSystemFeatures is Nix's default: the big-build markers, plus kvm
// when this machine has /dev/kvm.
func defaultSystemFeatures() string {
	f := "benchmark big-parallel nixos-test"
	if _, err := os.Stat("/dev/kvm"); err == nil {
		f = "benchmark big-parallel kvm nixos-test"
	}
	return f
}

// Settings are the effective settings: defaults, then the config files,
// then --option, later ones winning.
type Settings struct {
	values map[string]string
}

// loadSettings reads the config files that exist, in order, then applies
// overrides. warn receives a message for each setting storefs does not
// know or does not implement.
func loadSettings(files []string, overrides [][2]string, warn func(string)) (*Settings, error) {
	s := &Settings{values: map[string]string{}}
	known := map[string]setting{}
	for _, k := range knownSettings {
		known[k.name] = k
		s.values[k.name] = k.def()
	}
	set := func(name, value, where string) {
		appendIt := false
		if strings.HasPrefix(name, "extra-") {
			name, appendIt = strings.TrimPrefix(name, "extra-"), true
		}
		k, ok := known[name]
		switch {
		case !ok:
			warn(fmt.Sprintf("unknown setting '%s'%s", name, where))
			return
		case !k.implemented:
			warn(fmt.Sprintf("ignoring setting '%s'%s: storefs does not implement it yet", name, where))
		}
		if appendIt && s.values[name] != "" {
			value = s.values[name] + " " + value
		}
		s.values[name] = value
	}
	for _, f := range files {
		if err := readConfigFile(f, set); err != nil {
			return nil, err
		}
	}
	for _, o := range overrides {
		set(o[0], o[1], "")
	}
	return s, nil
}

// readConfigFile reads nix.conf syntax: "name = value" lines, '#' comments.
// A file that does not exist is skipped.
func readConfigFile(name string, set func(name, value, where string)) error {
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading configuration: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		k, v, ok := strings.Cut(text, "=")
		if !ok {
			return fmt.Errorf("syntax error in configuration line '%s' in '%s' (line %d)", text, name, line)
		}
		set(strings.TrimSpace(k), strings.TrimSpace(v), fmt.Sprintf(" in '%s'", name))
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", name, err)
	}
	return nil
}

// Names lists the settings in order.
func (s *Settings) Names() []string {
	names := make([]string, 0, len(s.values))
	for n := range s.values {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// String returns a setting's text.
func (s *Settings) String(name string) string {
	v, ok := s.values[name]
	if !ok {
		panic("storefs: invariant broken: setting '" + name + "' is not in knownSettings")
	}
	return v
}

// Strings splits a list setting on white space.
func (s *Settings) Strings(name string) []string { return strings.Fields(s.String(name)) }

// Bool parses a boolean setting ("true"/"false", as Nix).
func (s *Settings) Bool(name string) (bool, error) {
	switch v := s.String(name); v {
	case "true", "1", "yes":
		return true, nil
	case "false", "0", "no", "":
		return false, nil
	default:
		return false, fmt.Errorf("setting '%s' has invalid value '%s', expected true or false", name, v)
	}
}

// Int parses an integer setting.
func (s *Settings) Int(name string) (int64, error) {
	v := s.String(name)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("setting '%s' has invalid value '%s', expected an integer", name, v)
	}
	return n, nil
}

// Seconds parses a duration setting given in seconds; 0 means none.
func (s *Settings) Seconds(name string) (time.Duration, error) {
	n, err := s.Int(name)
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, fmt.Errorf("setting '%s' must not be negative", name)
	}
	return time.Duration(n) * time.Second, nil
}
