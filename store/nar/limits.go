package nar

// Limits the Reader enforces. Dump enforces MaxDepth as well, so that
// everything Dump writes can be read back.
const (
	// MaxDepth is how deeply directories may nest: the number of
	// directories on the way from the root to any node, the root included.
	// Nix sets no limit; 1024 is far beyond any real store path and keeps
	// the number of directory descriptors Restore holds open bounded.
	MaxDepth = 1024

	// MaxNameLen is the longest directory entry name, NAME_MAX on Linux.
	MaxNameLen = 255

	// MaxTargetLen is the longest symlink target, PATH_MAX on Linux less
	// its terminating NUL.
	MaxTargetLen = 4095

	// MaxPathLen is the longest path of a node below the root (Header.Path),
	// PATH_MAX less its NUL. Nix dumps and restores with path strings, so
	// it cannot handle longer paths either. Without this limit a small
	// archive of deep directories with long names would make every Header
	// carry a path of up to MaxDepth*MaxNameLen bytes.
	MaxPathLen = 4095

	// maxKeywordLen bounds every other token but file contents; the longest
	// keyword of the grammar, "nix-archive-1", has 13 bytes.
	maxKeywordLen = 64
)
