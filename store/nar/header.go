package nar

import "fmt"

// Type is the type of a node in an archive.
type Type uint8

// The node types of the NAR format.
const (
	TypeRegular Type = iota + 1
	TypeDirectory
	TypeSymlink
)

// String returns the type's name in the archive: "regular", "directory" or
// "symlink".
func (t Type) String() string {
	switch t {
	case TypeRegular:
		return "regular"
	case TypeDirectory:
		return "directory"
	case TypeSymlink:
		return "symlink"
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// Header describes one node of an archive, as returned by Reader.Next.
type Header struct {
	// Path is the node's slash-separated path relative to the root of the
	// archive: "" for the root, then "a", "a/b", and so on. Every component
	// is a valid file name: not empty, ".", or "..", without "/" or NUL.
	Path string

	// Type is the node's type.
	Type Type

	// Executable is whether a regular file is executable; false for other
	// types.
	Executable bool

	// Size is the length of a regular file's contents; 0 for other types.
	Size int64

	// LinkTarget is a symlink's target, not empty and without NUL; "" for
	// other types. It is not checked further: it may be absolute or point
	// outside the archive.
	LinkTarget string
}
