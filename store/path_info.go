package store

import (
	"encoding/json"
	"fmt"
	"time"
)

// PathInfo is what the store knows of a valid path.
type PathInfo struct {
	Path    Path
	NARHash Hash
	NARSize uint64
	// References are the store paths the contents mention, possibly
	// including Path itself.
	References []Path
	// Deriver is the .drv that built the path, or "".
	Deriver Path
	// CA is the content address ("fixed:r:sha256:…", "text:sha256:…"), or "".
	CA         string
	Signatures []string
	// RegistrationTime is when the path became valid here.
	RegistrationTime time.Time
	// Ultimate is true when this store made the path (built or added it)
	// rather than trusting someone else's signature.
	Ultimate bool
}

// pathRecord is the database encoding of a PathInfo. Paths are stored as
// base names, so the record does not repeat the store directory.
type pathRecord struct {
	NARHash          string   `json:"h"`
	NARSize          uint64   `json:"s"`
	References       []string `json:"r,omitempty"`
	Deriver          string   `json:"d,omitempty"`
	CA               string   `json:"ca,omitempty"`
	Signatures       []string `json:"sig,omitempty"`
	RegistrationTime int64    `json:"t"`
	Ultimate         bool     `json:"u,omitempty"`
}

func encodePathInfo(info *PathInfo) ([]byte, error) {
	r := pathRecord{
		NARHash:          info.NARHash.String(),
		NARSize:          info.NARSize,
		CA:               info.CA,
		Signatures:       info.Signatures,
		RegistrationTime: info.RegistrationTime.Unix(),
		Ultimate:         info.Ultimate,
	}
	for _, ref := range info.References {
		r.References = append(r.References, ref.Base())
	}
	if info.Deriver != "" {
		r.Deriver = info.Deriver.Base()
	}
	return json.Marshal(&r)
}

func decodePathInfo(dir Dir, base string, data []byte) (*PathInfo, error) {
	var r pathRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("decoding path info of %s: %w", base, err)
	}
	h, err := ParseHash(r.NARHash)
	if err != nil {
		return nil, fmt.Errorf("decoding path info of %s: %w", base, err)
	}
	info := &PathInfo{
		Path:             Path(string(dir) + "/" + base),
		NARHash:          h,
		NARSize:          r.NARSize,
		CA:               r.CA,
		Signatures:       r.Signatures,
		RegistrationTime: time.Unix(r.RegistrationTime, 0),
		Ultimate:         r.Ultimate,
		References:       make([]Path, 0, len(r.References)),
	}
	for _, ref := range r.References {
		info.References = append(info.References, Path(string(dir)+"/"+ref))
	}
	if r.Deriver != "" {
		info.Deriver = Path(string(dir) + "/" + r.Deriver)
	}
	return info, nil
}

// pathInfoJSON is the shape of one entry of `nix path-info --json`, in
// Nix 2.8's key order.
type pathInfoJSON struct {
	Path             string   `json:"path"`
	NARHash          string   `json:"narHash"`
	NARSize          uint64   `json:"narSize"`
	References       []string `json:"references"`
	CA               string   `json:"ca,omitempty"`
	ClosureSize      *uint64  `json:"closureSize,omitempty"`
	Deriver          string   `json:"deriver,omitempty"`
	RegistrationTime int64    `json:"registrationTime,omitempty"`
	Ultimate         bool     `json:"ultimate,omitempty"`
	Signatures       []string `json:"signatures,omitempty"`
}

// JSONValue returns the path info shaped like `nix path-info --json`;
// closureSize is included when non-nil.
func (info *PathInfo) JSONValue(closureSize *uint64) any {
	j := pathInfoJSON{
		Path:             string(info.Path),
		NARHash:          info.NARHash.SRI(),
		NARSize:          info.NARSize,
		References:       []string{},
		CA:               info.CA,
		ClosureSize:      closureSize,
		Deriver:          string(info.Deriver),
		RegistrationTime: info.RegistrationTime.Unix(),
		Ultimate:         info.Ultimate,
		Signatures:       info.Signatures,
	}
	refs := append([]Path(nil), info.References...)
	SortPaths(refs)
	for _, r := range refs {
		j.References = append(j.References, string(r))
	}
	return j
}
