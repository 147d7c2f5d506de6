package cache

import "context"

// signatureCheckingCache refuses narinfos that no trusted key signed.
type signatureCheckingCache struct {
	Cache
	keys PublicKeys
}

// NewSignatureCheckingCache returns c with require-sigs: NARInfo refuses
// a narinfo unless a signature of one of keys (trusted-public-keys)
// verifies its fingerprint, or it is content-addressed (its CA, name and
// references give its path; Fetch then checks the contents against the
// CA), as Nix's SubstitutionGoal does. The refusal, in Nix 2.8's words,
// matches ErrUntrusted.
func NewSignatureCheckingCache(c Cache, keys PublicKeys) Cache {
	return &signatureCheckingCache{Cache: c, keys: keys}
}

func (c *signatureCheckingCache) NARInfo(ctx context.Context, hashPart string) (*NARInfo, error) {
	ni, err := c.Cache.NARInfo(ctx, hashPart)
	if err != nil {
		return nil, err
	}
	if !ni.IsTrusted(c.keys) {
		return nil, &untrustedError{path: string(ni.StorePath), url: c.URL()}
	}
	return ni, nil
}
