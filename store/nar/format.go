package nar

// The tokens of the NAR grammar. Every token is a string: a 64-bit
// little-endian length, the bytes, and zero padding to a multiple of 8.
const (
	magic = "nix-archive-1"

	tokOpen       = "("
	tokClose      = ")"
	tokType       = "type"
	tokRegular    = "regular"
	tokExecutable = "executable"
	tokContents   = "contents"
	tokSymlink    = "symlink"
	tokTarget     = "target"
	tokDirectory  = "directory"
	tokEntry      = "entry"
	tokName       = "name"
	tokNode       = "node"
)

// padding returns the number of zero bytes that follow a string of n bytes.
func padding(n uint64) int { return int(-n & 7) }
