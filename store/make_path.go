package store

import (
	"fmt"
	"strings"
)

// MakePath computes a store path from Nix's fingerprint
// "<type>:sha256:<hex>:<store dir>:<name>", hashed with SHA-256 and folded
// to 160 bits (Nix's makeStorePath).
func (d Dir) MakePath(typ string, h Hash, name string) (Path, error) {
	if err := CheckName(name); err != nil {
		return "", err
	}
	fp := typ + ":" + h.Base16WithAlgo() + ":" + string(d) + ":" + name
	sum := HashString(SHA256, fp)
	return Path(string(d) + "/" + Base32Encode(CompressHash(sum.Digest, 20)) + "-" + name), nil
}

// pathType is Nix's makeType: the type tag followed by the references, and
// ":self" when the path refers to itself (source paths only).
func pathType(typ string, refs []Path, self bool) string {
	var b strings.Builder
	b.WriteString(typ)
	sorted := append([]Path(nil), refs...)
	SortPaths(sorted)
	for _, r := range sorted {
		b.WriteByte(':')
		b.WriteString(string(r))
	}
	if self {
		b.WriteString(":self")
	}
	return b.String()
}

// MakeTextPath is the path of a text file (builtins.toFile, a .drv) with
// SHA-256 h of its contents and the given references.
func (d Dir) MakeTextPath(name string, h Hash, refs []Path) (Path, error) {
	if h.Algo != SHA256 {
		return "", fmt.Errorf("text path '%s' needs a sha256 hash, not %s", name, h.Algo)
	}
	return d.MakePath(pathType("text", refs, false), h, name)
}

// MakeFixedOutputPath is the path of content with hash h, computed over the
// NAR serialisation when recursive, or over the flat file otherwise.
func (d Dir) MakeFixedOutputPath(name string, recursive bool, h Hash, refs []Path, self bool) (Path, error) {
	if recursive && h.Algo == SHA256 {
		return d.MakePath(pathType("source", refs, self), h, name)
	}
	if len(refs) > 0 || self {
		return "", fmt.Errorf("fixed-output path '%s' of a flat or non-sha256 hash cannot have references", name)
	}
	r := ""
	if recursive {
		r = "r:"
	}
	inner := HashString(SHA256, "fixed:out:"+r+h.Base16WithAlgo()+":")
	return d.MakePath("output:out", inner, name)
}

// MakeOutputPath is the path of output id of an input-addressed derivation
// whose hashDerivationModulo is h. Outputs other than "out" get "-<id>"
// appended to the name.
func (d Dir) MakeOutputPath(id string, h Hash, drvName string) (Path, error) {
	name := drvName
	if id != "out" {
		name += "-" + id
	}
	return d.MakePath("output:"+id, h, name)
}

// FixedCA is the content address of a fixed-output path,
// "fixed:[r:]<algo>:<nix-base32>".
func FixedCA(recursive bool, h Hash) string {
	r := ""
	if recursive {
		r = "r:"
	}
	return "fixed:" + r + h.String()
}

// TextCA is the content address of a text path, "text:sha256:<nix-base32>".
func TextCA(h Hash) string { return "text:" + h.String() }
