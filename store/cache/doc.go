// Package cache reads and writes Nix binary caches: the .narinfo and
// nix-cache-info formats, ed25519 signatures, NAR compression, caches on
// disk (file://) and over HTTP, and the operations that move paths between
// a cache and a store (Fetch, CopyFrom, CopyTo) or serve a store as a
// cache (NewServer). Every format is Nix's, byte for byte: a cache written
// by `nix copy --to file://…` substitutes here, and one written here
// substitutes into Nix.
//
// # Basics
//
// A Cache is one binary cache, a family of implementations that live
// together as bb-storage's BlobAccess does: NewFileCache and NewHTTPCache
// talk to a cache, and decorators wrap one to add a behaviour:
// NewSignatureCheckingCache refuses narinfos no trusted key signed,
// NewSigningCache signs the narinfos written through it, and
// NewCircuitBreakerCache fails fast for a while once a cache is down
// instead of trying it again for every path. Open turns a Nix store URL
// with its query parameters (file:///dir?compression=zstd&secret-key=FILE,
// https://host?priority=40) into a cache, signing if asked to; whoever
// uses it as a substituter (the realiser, `storefs copy --from`) adds the
// signature check and the circuit breaker from its settings.
//
// A NARInfo is one .narinfo: a store path, its NAR's hash and size, its
// references, and where the (compressed) NAR lies in the cache. Its
// Fingerprint is what Nix signs; PublicKeys verify and a SecretKey signs.
//
// Fetch imports one path from a cache into a store; CopyFrom imports the
// closures of paths (references first), CopyTo writes the closures of
// valid paths to a writable cache, and NewServer is an http.Handler that
// serves a store as a binary cache.
//
// # Invariants
//
//   - Nothing unverified is valid: Fetch streams the NAR through a
//     SHA-256 and a byte count into nar.Restore, which unpacks it into the
//     store's temporary area, and registers the path only if hash and size
//     match the narinfo (and the content address, if it has one). It never
//     reads more than NarSize+1 bytes of NAR. On any failure the temporary
//     tree is removed and nothing is registered.
//   - Closure: Fetch registers a path only when its references are valid
//     already; CopyFrom fetches references first, CopyTo writes a path's
//     narinfo only after those of its references, so a reader of the
//     cache never finds a narinfo whose references are missing.
//   - A narinfo is only believed for the path asked for: a cache's answer
//     for hash part h must name a store path with hash part h.
//   - A cache is only read for the store directory it is for: before its
//     first narinfo or NAR, a cache reads its nix-cache-info, and refuses
//     every read if the StoreDir there is not ours.
//   - Hostile caches: narinfo URLs cannot leave the cache directory, the
//     NAR reader rejects anything that would write outside its target
//     (see store/nar), and signatures count only from trusted keys.
//
// # Concurrency and ownership
//
// Caches, decorators and the server are safe for concurrent use. The
// reader that Cache.NAR returns belongs to the caller, who must close it;
// closing it stops the download. Fetch, CopyFrom and CopyTo take a
// context and check it while streaming; an HTTP download is cancelled with
// its request's context.
//
// # Caveats
//
// HTTP caches are read-only here (ErrReadOnly); writing is for file://
// caches. The server serves NARs uncompressed (Compression: none), which
// suits a local network; a cache meant for the internet is better written
// with CopyTo and compression=zstd, then served as static files. xz is
// Go code (github.com/ulikunitz/xz) rather than liblzma, so that storefs
// stays a static binary; it decompresses at about half liblzma's speed
// and compresses less tightly than `xz -6`, so zstd is the better choice
// for caches that storefs writes.
package cache
