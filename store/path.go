package store

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
)

// HashPartLen is the length of the nix-base32 hash part of a store path
// (160 bits).
const HashPartLen = 32

// MaxNameLen is the longest name Nix accepts in a store path.
const MaxNameLen = 211

// DefaultDir is the store directory Nix and storefs use by default.
const DefaultDir Dir = "/nix/store"

// Dir is a store directory such as /nix/store: the logical location that
// store paths name and that is hashed into them. It is absolute and clean.
type Dir string

// Path is an absolute store path, <Dir>/<hash part>-<name>. Values made by
// ParsePath, Dir.Parse or the Make* functions are valid.
type Path string

// ParseDir checks that s is an absolute, clean directory name.
func ParseDir(s string) (Dir, error) {
	if s == "" || !filepath.IsAbs(s) || filepath.Clean(s) != s || s == "/" {
		return "", fmt.Errorf("store directory '%s' must be an absolute, clean path other than /", s)
	}
	return Dir(s), nil
}

// Parse checks that s is a store path directly in d.
func (d Dir) Parse(s string) (Path, error) {
	dir, base := filepath.Split(s)
	if strings.TrimSuffix(dir, "/") != string(d) {
		return "", fmt.Errorf("path '%s' is not in the Nix store: %w", s, ErrInvalidPath)
	}
	if err := CheckBase(base); err != nil {
		return "", fmt.Errorf("path '%s': %w", s, err)
	}
	return Path(s), nil
}

// ParseBase turns a base name "<hash>-<name>" into a path in d.
func (d Dir) ParseBase(base string) (Path, error) {
	if err := CheckBase(base); err != nil {
		return "", err
	}
	return Path(string(d) + "/" + base), nil
}

// ToStorePath finds the store path that s lies in, for s itself a store
// path or a file below one (as `nix-store` accepts).
func (d Dir) ToStorePath(s string) (Path, error) {
	s = filepath.Clean(s)
	prefix := string(d) + "/"
	if !strings.HasPrefix(s, prefix) {
		return "", fmt.Errorf("path '%s' is not in the Nix store: %w", s, ErrInvalidPath)
	}
	rest := s[len(prefix):]
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		rest = rest[:i]
	}
	return d.ParseBase(rest)
}

// CheckBase checks a base name "<hash>-<name>" with Nix's rules.
func CheckBase(base string) error {
	if len(base) < HashPartLen+2 || base[HashPartLen] != '-' {
		return fmt.Errorf("'%s' is not a store path base name: %w", base, ErrInvalidPath)
	}
	for i := 0; i < HashPartLen; i++ {
		if !IsBase32(base[i]) {
			return fmt.Errorf("store path '%s' has an invalid hash part: %w", base, ErrInvalidPath)
		}
	}
	return CheckName(base[HashPartLen+1:])
}

// CheckName checks the name part of a store path as Nix 2.8 does.
func CheckName(name string) error {
	if name == "" {
		return fmt.Errorf("store path name is empty: %w", ErrInvalidPath)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("store path name '%s' is longer than %d characters: %w", name, MaxNameLen, ErrInvalidPath)
	}
	if name[0] == '.' {
		return fmt.Errorf("store path name '%s' starts with illegal character '.': %w", name, ErrInvalidPath)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' ||
			c == '+' || c == '-' || c == '.' || c == '_' || c == '?' || c == '=') {
			return fmt.Errorf("store path name '%s' contains illegal character '%c': %w", name, c, ErrInvalidPath)
		}
	}
	return nil
}

// Base is "<hash>-<name>".
func (p Path) Base() string { return filepath.Base(string(p)) }

// HashPart is the 32-character hash part.
func (p Path) HashPart() string { return p.Base()[:HashPartLen] }

// Name is the part after "<hash>-".
func (p Path) Name() string { return p.Base()[HashPartLen+1:] }

// Dir is the store directory the path is in.
func (p Path) Dir() Dir { return Dir(filepath.Dir(string(p))) }

// IsDerivation reports whether p names a .drv file.
func (p Path) IsDerivation() bool { return strings.HasSuffix(string(p), ".drv") }

func (p Path) String() string { return string(p) }

// SortPaths sorts paths in place, as Nix orders them (byte order).
func SortPaths(ps []Path) {
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
}

// PathSet is a set of store paths.
type PathSet map[Path]struct{}

// NewPathSet makes a set holding ps.
func NewPathSet(ps ...Path) PathSet {
	s := make(PathSet, len(ps))
	for _, p := range ps {
		s[p] = struct{}{}
	}
	return s
}

// Add adds p.
func (s PathSet) Add(p Path) { s[p] = struct{}{} }

// Has reports whether p is in the set.
func (s PathSet) Has(p Path) bool { _, ok := s[p]; return ok }

// Sorted returns the members in Nix's order.
func (s PathSet) Sorted() []Path {
	out := make([]Path, 0, len(s))
	for p := range s {
		out = append(out, p)
	}
	SortPaths(out)
	return out
}
