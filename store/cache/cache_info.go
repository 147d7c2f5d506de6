package cache

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/storefs/storefs/store"
)

// infoFile is the name of a cache's nix-cache-info file.
const infoFile = "nix-cache-info"

// maxInfoSize bounds the nix-cache-info file read from a cache.
const maxInfoSize = 64 << 10

// Info is a cache's nix-cache-info: what store it is for and how clients
// should use it.
type Info struct {
	// StoreDir is the store directory of the paths in the cache; a cache
	// is only usable by stores with the same one.
	StoreDir store.Dir
	// WantMassQuery says that clients may query many narinfos at once
	// (for `nix-env -qas`).
	WantMassQuery bool
	// Priority orders substituters, lower first; 0 when the file gives
	// none. cache.nixos.org says 40, nix-serve 30.
	Priority int
}

// ParseInfo parses a nix-cache-info file as Nix does: "Key: value"
// lines, values trimmed, lines without a colon and unknown keys ignored.
// A Priority that is not a number is an error.
func ParseInfo(data []byte) (*Info, error) {
	info := &Info{}
	for _, line := range strings.Split(string(data), "\n") {
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		value = strings.TrimSpace(value)
		switch key {
		case "StoreDir":
			info.StoreDir = store.Dir(value)
		case "WantMassQuery":
			info.WantMassQuery = value == "1"
		case "Priority":
			n, err := strconv.Atoi(value)
			if err != nil {
				return nil, fmt.Errorf("invalid nix-cache-info: Priority '%s' is not a number", value)
			}
			info.Priority = n
		}
	}
	return info, nil
}

// String is the file's text, fields in Nix's order; WantMassQuery and
// Priority only when set.
func (info *Info) String() string {
	s := "StoreDir: " + string(info.StoreDir) + "\n"
	if info.WantMassQuery {
		s += "WantMassQuery: 1\n"
	}
	if info.Priority != 0 {
		s += "Priority: " + strconv.Itoa(info.Priority) + "\n"
	}
	return s
}

// checkInfo parses a cache's nix-cache-info, checks it is for the store
// directory dir, and applies the overrides of opts (priority=,
// want-mass-query=).
func checkInfo(data []byte, url string, o *options) (*Info, error) {
	info, err := ParseInfo(data)
	if err != nil {
		return nil, fmt.Errorf("binary cache '%s': %w", url, err)
	}
	if info.StoreDir != "" && info.StoreDir != o.StoreDir {
		return nil, fmt.Errorf("binary cache '%s' is for Nix stores with prefix '%s', not '%s'", url, info.StoreDir, o.StoreDir)
	}
	if o.Priority != 0 {
		info.Priority = o.Priority
	}
	if o.WantMassQuery != nil {
		info.WantMassQuery = *o.WantMassQuery
	}
	return info, nil
}
