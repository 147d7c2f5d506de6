package cache

import "context"

// signingCache signs the narinfos written through it.
type signingCache struct {
	Cache
	key *SecretKey
}

// NewSigningCache returns c, adding key's signature to each narinfo that
// PutNARInfo writes (secret-key= of a store URL), as Nix's
// BinaryCacheStore does. The signature is added to the caller's NARInfo.
func NewSigningCache(c Cache, key *SecretKey) Cache {
	return &signingCache{Cache: c, key: key}
}

func (c *signingCache) PutNARInfo(ctx context.Context, ni *NARInfo) error {
	ni.Sign(c.key)
	return c.Cache.PutNARInfo(ctx, ni)
}
