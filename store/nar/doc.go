// Package nar reads and writes NAR files, Nix's archive format, byte for
// byte as Nix does: the serialisation that store paths are hashed as and
// that binary caches serve.
//
// # Basics
//
// Dump writes the NAR of a file, symlink or directory tree. A Reader reads
// a NAR node by node, like archive/tar, and Restore unpacks one into a new
// directory. Nothing here knows about store paths, hashes or compression:
// Dump writes to any io.Writer (typically an io.MultiWriter of a hash and a
// reference scanner) and the Reader reads from any io.Reader.
//
// # Format
//
// Every token is a string: its length as a 64-bit little-endian integer, its
// bytes, and zero bytes padding it to a multiple of 8. An archive is the
// string "nix-archive-1" followed by a node:
//
//	node      = "(" "type" type ")"
//	type      = "regular" [ "executable" "" ] "contents" <contents>
//	          | "symlink" "target" <target>
//	          | "directory" { "entry" "(" "name" <name> "node" node ")" }
//
// A regular file is executable when its owner-execute bit is set; no other
// metadata (times, owner, other mode bits) is recorded. Directory entries
// are sorted by name in byte order. Each file has exactly one serialisation,
// so the NAR of a tree, and hence its hash, is canonical.
//
// # What the Reader rejects
//
// A NAR may come from an untrusted binary cache, so the Reader accepts only
// the canonical form that Dump and Nix write, and rejects with a
// *FormatError that names the byte offset and path:
//
//   - a bad magic, unknown tokens or node types, missing or repeated parts
//     ("executable" must come before "contents", with the value "");
//   - entry names that are empty, "." or "..", or contain "/" or NUL; names
//     out of order or repeated (a symlink cannot be followed by an entry of
//     the same name that would write through it);
//   - symlink targets that are empty or contain NUL;
//   - non-zero padding;
//   - strings longer than their limit: MaxNameLen (255) bytes for names,
//     MaxTargetLen (4095) for symlink targets and 64 for keywords; file
//     contents are never held in memory, so a huge declared size costs
//     nothing until the data arrives;
//   - paths below the root longer than MaxPathLen (4095) bytes;
//   - directories nested deeper than MaxDepth (1024), the root counting as
//     one;
//   - truncated input, as a *FormatError wrapping io.ErrUnexpectedEOF.
//
// Dump refuses trees that break these limits, so whatever it writes reads
// back. Restore also rejects data after the end of the archive; the Reader
// reads ahead into a buffer and leaves that check to its caller.
//
// # Restore never writes outside its target
//
// Restore creates the target and everything in it with openat, mkdirat and
// symlinkat relative to directory descriptors it opened itself, with
// O_NOFOLLOW and O_EXCL, and never resolves a path string below the target.
// Together with the Reader's checks, no archive can make it create, follow
// or overwrite anything outside the target. On error it removes what it
// created. It holds one descriptor per open directory level, at most
// MaxDepth.
//
// # Caveats
//
// Dump and Restore are Linux-only. Neither takes a context: to cancel a
// Restore, make its reader fail (as an HTTP body does when its request's
// context is cancelled). Dump reads files while they may change; the store
// dumps only paths that nothing writes to any more. A Reader is not safe
// for concurrent use; Dump and Restore may run concurrently on different
// trees. Nothing here closes the readers and writers it is given.
package nar
