package cache

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/storefs/storefs/store"
)

// maxNARInfoSize bounds the narinfo files read from a cache. A narinfo
// grows with its references, about 60 bytes each; 4 MiB allows tens of
// thousands while keeping a hostile cache from filling memory.
const maxNARInfoSize = 4 << 20

// unknownDeriver is what Nix writes, and accepts, for "no deriver".
const unknownDeriver = "unknown-deriver"

// NARInfo is a .narinfo file: what a binary cache knows of one store path
// and where its NAR lies.
type NARInfo struct {
	// StorePath is the path described.
	StorePath store.Path
	// URL is where the compressed NAR is, relative to the cache (usually
	// nar/<FileHash>.nar.<ext>).
	URL string
	// Compression is the NAR's compression: "xz", "zstd", "bzip2",
	// "gzip" or "none". A narinfo without it means bzip2, as in Nix.
	Compression string
	// FileHash and FileSize are the hash and size of the compressed NAR;
	// zero when not given.
	FileHash store.Hash
	FileSize uint64
	// NARHash (SHA-256) and NARSize are those of the uncompressed NAR.
	NARHash store.Hash
	NARSize uint64
	// References are the store paths the contents refer to, sorted; the
	// file lists their base names.
	References []store.Path
	// Deriver is the .drv that produced the path, or "".
	Deriver store.Path
	// System is the platform the path was built for, or "".
	System string
	// Sigs are signatures "<key name>:<base64>" of Fingerprint.
	Sigs []string
	// CA is the content address ("fixed:r:sha256:…", "text:sha256:…"),
	// or "".
	CA string
}

// ParseNARInfo parses a .narinfo for a store in dir. It accepts every
// field Nix 2.8 writes or reads and ignores unknown ones; it rejects a
// narinfo that lacks StorePath, URL, NarHash or NarSize, or whose fields
// are malformed. Errors do not name the cache or the file: callers add
// that.
func ParseNARInfo(dir store.Dir, data []byte) (*NARInfo, error) {
	ni := &NARInfo{}
	seen := map[string]bool{}
	text := string(data)
	for lineNo := 1; text != ""; lineNo++ {
		line, rest, _ := strings.Cut(text, "\n")
		text = rest
		if line == "" {
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("invalid narinfo: line %d has no ':'", lineNo)
		}
		// Nix writes "Key: value" and reads the value from two bytes after
		// the colon; "References:" with nothing after it is empty too.
		value = strings.TrimPrefix(value, " ")
		bad := func(format string, args ...any) error {
			return fmt.Errorf("invalid narinfo: line %d (%s): %s", lineNo, key, fmt.Sprintf(format, args...))
		}
		if key != "Sig" && knownNARInfoKeys[key] {
			if seen[key] {
				return nil, bad("field given twice")
			}
			seen[key] = true
		}
		switch key {
		case "StorePath":
			p, err := dir.Parse(value)
			if err != nil {
				return nil, bad("%v", err)
			}
			ni.StorePath = p
		case "URL":
			ni.URL = value
		case "Compression":
			ni.Compression = value
		case "FileHash":
			h, err := store.ParseHash(value)
			if err != nil {
				return nil, bad("%v", err)
			}
			ni.FileHash = h
		case "FileSize":
			n, err := strconv.ParseUint(value, 10, 64)
			if err != nil {
				return nil, bad("'%s' is not a size", value)
			}
			ni.FileSize = n
		case "NarHash":
			h, err := store.ParseHash(value)
			if err != nil {
				return nil, bad("%v", err)
			}
			if h.Algo != store.SHA256 {
				return nil, bad("NAR hash '%s' is not sha256", value)
			}
			ni.NARHash = h
		case "NarSize":
			n, err := strconv.ParseUint(value, 10, 64)
			if err != nil {
				return nil, bad("'%s' is not a size", value)
			}
			ni.NARSize = n
		case "References":
			for _, base := range strings.Fields(value) {
				p, err := dir.ParseBase(base)
				if err != nil {
					return nil, bad("reference: %v", err)
				}
				ni.References = append(ni.References, p)
			}
		case "Deriver":
			if value != unknownDeriver {
				p, err := dir.ParseBase(value)
				if err != nil {
					return nil, bad("%v", err)
				}
				ni.Deriver = p
			}
		case "System":
			ni.System = value
		case "Sig":
			ni.Sigs = append(ni.Sigs, value)
		case "CA":
			if _, err := parseContentAddress(value); err != nil {
				return nil, bad("%v", err)
			}
			ni.CA = value
		}
	}
	for _, k := range []string{"StorePath", "URL", "NarHash", "NarSize"} {
		if !seen[k] {
			return nil, fmt.Errorf("invalid narinfo: no %s", k)
		}
	}
	if ni.URL == "" {
		return nil, fmt.Errorf("invalid narinfo: URL is empty")
	}
	if ni.NARSize == 0 {
		return nil, fmt.Errorf("invalid narinfo: NarSize is 0")
	}
	if ni.Compression == "" {
		ni.Compression = CompressionBzip2
	}
	store.SortPaths(ni.References)
	ni.References = slices.Compact(ni.References)
	return ni, nil
}

// knownNARInfoKeys are the fields ParseNARInfo reads; each may appear once,
// except Sig.
var knownNARInfoKeys = map[string]bool{
	"StorePath": true, "URL": true, "Compression": true, "FileHash": true,
	"FileSize": true, "NarHash": true, "NarSize": true, "References": true,
	"Deriver": true, "System": true, "Sig": true, "CA": true,
}

// String is the narinfo in Nix's format and field order
// (NarInfo::to_string): references as sorted base names, signatures sorted
// and without duplicates.
func (ni *NARInfo) String() string {
	var b strings.Builder
	field := func(k, v string) {
		b.WriteString(k)
		b.WriteString(": ")
		b.WriteString(v)
		b.WriteByte('\n')
	}
	field("StorePath", string(ni.StorePath))
	field("URL", ni.URL)
	field("Compression", ni.Compression)
	if !ni.FileHash.IsZero() {
		field("FileHash", ni.FileHash.String())
	}
	if !ni.FileHash.IsZero() || ni.FileSize != 0 {
		field("FileSize", strconv.FormatUint(ni.FileSize, 10))
	}
	field("NarHash", ni.NARHash.String())
	field("NarSize", strconv.FormatUint(ni.NARSize, 10))
	field("References", strings.Join(ni.referenceBases(), " "))
	if ni.Deriver != "" {
		field("Deriver", ni.Deriver.Base())
	}
	if ni.System != "" {
		field("System", ni.System)
	}
	for _, s := range sortedUnique(ni.Sigs) {
		field("Sig", s)
	}
	if ni.CA != "" {
		field("CA", ni.CA)
	}
	return b.String()
}

// referenceBases returns the references' base names, sorted.
func (ni *NARInfo) referenceBases() []string {
	out := make([]string, 0, len(ni.References))
	for _, r := range ni.References {
		out = append(out, r.Base())
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// check reports whether ni is complete enough to be written to a cache
// for a store in dir.
func (ni *NARInfo) check(dir store.Dir) error {
	if _, err := dir.Parse(string(ni.StorePath)); err != nil {
		return fmt.Errorf("narinfo: %w", err)
	}
	if ni.URL == "" || strings.ContainsAny(ni.URL, "\n") {
		return fmt.Errorf("narinfo of %s: URL '%s' is empty or has a newline", ni.StorePath, ni.URL)
	}
	if ni.NARHash.Algo != store.SHA256 || ni.NARSize == 0 {
		return fmt.Errorf("narinfo of %s: no SHA-256 NAR hash or no NAR size", ni.StorePath)
	}
	if ni.Compression == "" {
		return fmt.Errorf("narinfo of %s: no compression", ni.StorePath)
	}
	for _, s := range append([]string{ni.System, ni.CA, ni.Compression}, ni.Sigs...) {
		if strings.ContainsAny(s, "\n") {
			return fmt.Errorf("narinfo of %s: field '%s' has a newline", ni.StorePath, s)
		}
	}
	return nil
}

// sortedUnique returns a sorted copy of ss without duplicates, as Nix
// keeps signatures in a set.
func sortedUnique(ss []string) []string {
	out := slices.Clone(ss)
	slices.Sort(out)
	return slices.Compact(out)
}

// narInfoFile is the name of the narinfo of the path with hash part h.
func narInfoFile(hashPart string) string { return hashPart + ".narinfo" }

// checkHashPart checks that h is a store path's hash part, so that it
// can name a file in a cache.
func checkHashPart(h string) error {
	if len(h) != store.HashPartLen {
		return fmt.Errorf("'%s' is not a store path hash part: %w", h, store.ErrInvalidPath)
	}
	for i := 0; i < len(h); i++ {
		if !store.IsBase32(h[i]) {
			return fmt.Errorf("'%s' is not a store path hash part: %w", h, store.ErrInvalidPath)
		}
	}
	return nil
}

// parseNARInfoFor parses a narinfo a cache returned for hash part h: it
// must describe the path with that hash part.
func parseNARInfoFor(dir store.Dir, data []byte, hashPart, where string) (*NARInfo, error) {
	ni, err := ParseNARInfo(dir, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if ni.StorePath.HashPart() != hashPart {
		return nil, fmt.Errorf("%s: narinfo describes '%s', not a path with hash part '%s'", where, ni.StorePath, hashPart)
	}
	return ni, nil
}
