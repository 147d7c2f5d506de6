package cache

import (
	"fmt"
	"strings"

	"github.com/storefs/storefs/store"
)

// caMethod is how a content address hashes a path's contents.
type caMethod uint8

const (
	// caText is "text:sha256:…": the SHA-256 of a single file's bytes
	// (builtins.toFile, .drv files).
	caText caMethod = iota + 1
	// caFlat is "fixed:<algo>:…": the hash of a single file's bytes.
	caFlat
	// caRecursive is "fixed:r:<algo>:…": the hash of the NAR.
	caRecursive
)

// contentAddress is a parsed CA field of a narinfo, as Nix 2.8 renders
// them (renderContentAddress).
type contentAddress struct {
	method caMethod
	hash   store.Hash
}

// parseContentAddress parses "text:sha256:<hash>" or
// "fixed:[r:]<algo>:<hash>".
func parseContentAddress(s string) (contentAddress, error) {
	switch {
	case strings.HasPrefix(s, "text:"):
		h, err := store.ParseHash(strings.TrimPrefix(s, "text:"))
		if err != nil {
			return contentAddress{}, fmt.Errorf("content address '%s': %w", s, err)
		}
		if h.Algo != store.SHA256 {
			return contentAddress{}, fmt.Errorf("content address '%s': text hashes must be sha256", s)
		}
		return contentAddress{method: caText, hash: h}, nil
	case strings.HasPrefix(s, "fixed:"):
		rest, method := strings.TrimPrefix(s, "fixed:"), caFlat
		if strings.HasPrefix(rest, "r:") {
			rest, method = strings.TrimPrefix(rest, "r:"), caRecursive
		}
		h, err := store.ParseHash(rest)
		if err != nil {
			return contentAddress{}, fmt.Errorf("content address '%s': %w", s, err)
		}
		return contentAddress{method: method, hash: h}, nil
	}
	return contentAddress{}, fmt.Errorf("content address '%s' is neither 'text:' nor 'fixed:'", s)
}

// storePath computes the path that a path of this name with these
// references has under the content address, as Nix's
// ValidPathInfo::isContentAddressed does: a reference to the path itself
// counts as a self-reference, not as a reference.
func (ca contentAddress) storePath(dir store.Dir, self store.Path, refs []store.Path) (store.Path, error) {
	others := make([]store.Path, 0, len(refs))
	hasSelf := false
	for _, r := range refs {
		if r == self {
			hasSelf = true
			continue
		}
		others = append(others, r)
	}
	name := self.Name()
	if ca.method == caText {
		if hasSelf {
			return "", fmt.Errorf("text path '%s' cannot refer to itself", self)
		}
		return dir.MakeTextPath(name, ca.hash, others)
	}
	return dir.MakeFixedOutputPath(name, ca.method == caRecursive, ca.hash, others, hasSelf)
}
