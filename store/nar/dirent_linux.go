package nar

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"
)

// direntBufSize is the buffer for getdents64; it must hold at least one
// record (about 280 bytes), and more means fewer calls for big directories.
const direntBufSize = 32 << 10

// dirent is a directory entry: its name and its d_type (unix.DT_*).
type dirent struct {
	name string
	typ  uint8
}

// The layout of struct linux_dirent64: d_ino, d_off, d_reclen, d_type, d_name.
const (
	direntInoOff    = unsafe.Offsetof(unix.Dirent{}.Ino)
	direntReclenOff = unsafe.Offsetof(unix.Dirent{}.Reclen)
	direntTypeOff   = unsafe.Offsetof(unix.Dirent{}.Type)
	direntNameOff   = unsafe.Offsetof(unix.Dirent{}.Name)
)

// readDir appends the entries of the directory open as fd to ents, in the
// order the file system returns them and without "." and "..". It reads
// the entries' types from getdents64, which saves a stat per entry; file
// systems that do not report types give unix.DT_UNKNOWN.
func readDir(fd int, buf []byte, ents []dirent) ([]dirent, error) {
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return ents, err
		}
		if n <= 0 {
			return ents, nil
		}
		for rec := buf[:n]; len(rec) > 0; {
			reclen := int(binary.NativeEndian.Uint16(rec[direntReclenOff:]))
			if reclen < int(direntNameOff) || reclen > len(rec) {
				return ents, unix.EIO // a kernel that breaks its own ABI
			}
			ino := binary.NativeEndian.Uint64(rec[direntInoOff:])
			typ := rec[direntTypeOff]
			name := rec[direntNameOff:reclen]
			rec = rec[reclen:]
			for i, c := range name {
				if c == 0 {
					name = name[:i]
					break
				}
			}
			if ino == 0 || string(name) == "." || string(name) == ".." {
				continue
			}
			ents = append(ents, dirent{name: string(name), typ: typ})
		}
	}
}

// direntType returns the d_type for a stat mode.
func direntType(mode uint32) uint8 {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return unix.DT_REG
	case unix.S_IFDIR:
		return unix.DT_DIR
	case unix.S_IFLNK:
		return unix.DT_LNK
	case unix.S_IFIFO:
		return unix.DT_FIFO
	case unix.S_IFSOCK:
		return unix.DT_SOCK
	case unix.S_IFCHR:
		return unix.DT_CHR
	case unix.S_IFBLK:
		return unix.DT_BLK
	}
	return unix.DT_UNKNOWN
}

// direntTypeName names a d_type in error messages.
func direntTypeName(typ uint8) string {
	switch typ {
	case unix.DT_REG:
		return "regular file"
	case unix.DT_DIR:
		return "directory"
	case unix.DT_LNK:
		return "symlink"
	case unix.DT_FIFO:
		return "fifo"
	case unix.DT_SOCK:
		return "socket"
	case unix.DT_CHR:
		return "character device"
	case unix.DT_BLK:
		return "block device"
	}
	return "file of unknown type"
}
