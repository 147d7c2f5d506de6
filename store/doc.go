// Package store is a Nix-compatible store: store paths and their hashes,
// derivations, the path-info database, and the backing directory that holds
// the contents of valid paths.
//
// # Basics
//
// A Path is an absolute store path, <Dir>/<hash>-<name>, where Dir is the
// logical store directory (/nix/store by default) that is hashed into every
// path. Dir.MakePath and its relatives compute paths exactly as Nix does
// (source, text, fixed-output and derivation output paths), with hashes in
// any of Nix's notations (Hash, ParseHash).
//
// A Derivation is a parsed .drv file (ParseDerivation, Derivation.ATerm) or
// its JSON form (ParseDerivationJSON); HashModulo and ComputeOutputPaths
// give its output paths.
//
// The NAR serialisation lives in the sub-package store/nar; ScanPath dumps
// a tree once to get its NAR hash, its size and its references (RefScanner).
//
// A Store (Open) couples the database (DB: bbolt, in
// <state>/db/storefs.db) with the backing directory <state>/store, where
// the contents of each valid path live under its base name.
//
// # Invariants
//
//   - Closure: a path is valid only if every path it references is valid.
//     Register takes a set of paths and makes them valid in one transaction,
//     refusing a reference that is neither valid nor in the set.
//   - Nothing half-made is valid: contents are written in the temporary area
//     (<state>/store/.tmp, emptied by Open; GC removes only the entries
//     that MkdirTemp did not hand out), canonicalised, and renamed into
//     place before registration. Delete and GC unregister before removing;
//     ReplaceValid swaps new contents in with one atomic exchange.
//   - Nothing in use is collected: GC checks each batch against the
//     temporary roots, under the lock TempRoots.Add takes, just before
//     making it invalid.
//   - Immutable once valid: Canonicalise sets mtime 1, modes 0444/0555, no
//     setuid/setgid/sticky bits and this process's owner; the NAR hash in
//     the database lets a verifier detect tampering.
//   - One process: Open takes an exclusive lock on <state>/db/lock and
//     waits, naming the holder's pid, while another process has the store.
//     Within the process, a Store is safe for concurrent use; PathLocks
//     serialise work on one path (and flock <path>.lock like Nix's output
//     locks).
//
// # Caveats
//
// Store paths are compared as strings; Dir.Parse is the only way in from
// untrusted text. The database stores base names, so it is tied to one
// store directory, which it records and checks on Open.
package store
