package cache

import (
	"strconv"
	"strings"
)

// Fingerprint is what a narinfo's signatures sign, as Nix's
// ValidPathInfo::fingerprint:
// "1;<path>;sha256:<nix-base32 NAR hash>;<NAR size>;<references, full paths, comma-separated>".
func (ni *NARInfo) Fingerprint() string {
	refs := make([]string, 0, len(ni.References))
	for _, r := range ni.referenceBases() {
		refs = append(refs, string(ni.StorePath.Dir())+"/"+r)
	}
	return "1;" + string(ni.StorePath) + ";" + ni.NARHash.String() + ";" +
		strconv.FormatUint(ni.NARSize, 10) + ";" + strings.Join(refs, ",")
}

// Sign adds sk's signature of the fingerprint, replacing an earlier
// signature of a key of the same name.
func (ni *NARInfo) Sign(sk *SecretKey) {
	sigs := ni.Sigs[:0:0]
	for _, s := range ni.Sigs {
		if !strings.HasPrefix(s, sk.Name+":") {
			sigs = append(sigs, s)
		}
	}
	ni.Sigs = sortedUnique(append(sigs, sk.Sign(ni.Fingerprint())))
}

// ValidSignatures counts the signatures that keys verify.
func (ni *NARInfo) ValidSignatures(keys PublicKeys) int {
	fp := ni.Fingerprint()
	n := 0
	for _, s := range sortedUnique(ni.Sigs) {
		if keys.Verify(fp, s) {
			n++
		}
	}
	return n
}

// IsContentAddressed reports whether the narinfo's CA, name and
// references give its store path, as Nix's
// ValidPathInfo::isContentAddressed: such a path needs no signature,
// since Fetch checks the contents against the content address.
func (ni *NARInfo) IsContentAddressed() bool {
	if ni.CA == "" {
		return false
	}
	ca, err := parseContentAddress(ni.CA)
	if err != nil {
		return false
	}
	p, err := ca.storePath(ni.StorePath.Dir(), ni.StorePath, ni.References)
	return err == nil && p == ni.StorePath
}

// IsTrusted reports whether a narinfo may be used when signatures are
// required: one of its signatures verifies with keys, or it is
// content-addressed (Nix's checkSignatures).
func (ni *NARInfo) IsTrusted(keys PublicKeys) bool {
	return ni.ValidSignatures(keys) > 0 || ni.IsContentAddressed()
}
