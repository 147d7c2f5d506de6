package sandbox

import (
	"errors"
	"io/fs"
	"reflect"
	"testing"
)

func TestSkeleton(t *testing.T) {
	for _, tc := range []struct {
		name    string
		list    func(s *skeleton)
		want    []skelEntry
		wantErr error
	}{
		// dirAll lists the missing parents, once.
		{"DirAll", func(s *skeleton) {
			s.dirAll("/a/b/c")
			s.dirAll("/a/b/d")
		}, []skelEntry{
			{Kind: skelDir, Path: "a", Mode: 0o755},
			{Kind: skelDir, Path: "a/b", Mode: 0o755},
			{Kind: skelDir, Path: "a/b/c", Mode: 0o755},
			{Kind: skelDir, Path: "a/b/d", Mode: 0o755},
		}, nil},
		// A directory listed as a parent, then on its own, gets its mode
		// where it was first listed.
		{"DirAfterParent", func(s *skeleton) {
			s.dirAll("/dev")
			s.mountFile("/dev/thing")
			s.dir("/dev", 0o1777, true)
		}, []skelEntry{
			{Kind: skelDir, Path: "dev", Mode: 0o1777, Group: true},
			{Kind: skelMountFile, Path: "dev/thing"},
		}, nil},
		// Mount points are listed once, whoever needs them.
		{"MountPointsOnce", func(s *skeleton) {
			s.mountDir("/proc")
			s.mountDir("/proc")
			s.mountFile("/f")
			s.mountFile("/f")
		}, []skelEntry{
			{Kind: skelMountDir, Path: "proc"},
			{Kind: skelMountFile, Path: "f"},
		}, nil},
		// A file listed twice is a conflict.
		{"FileTwice", func(s *skeleton) {
			s.file("/etc/passwd", "a")
			s.file("/etc/passwd", "b")
		}, []skelEntry{{Kind: skelFile, Path: "etc/passwd", Data: "a"}}, fs.ErrExist},
		// So is a directory where a symlink is listed.
		{"DirOnSymlink", func(s *skeleton) {
			s.symlink("/proc/self/fd", "/dev/fd")
			s.dir("/dev/fd", 0o755, false)
		}, []skelEntry{{Kind: skelSymlink, Path: "dev/fd", Data: "/proc/self/fd"}}, fs.ErrExist},
		// Nothing may be listed below a symlink: making it would follow
		// the symlink, maybe out of the tree.
		{"BelowSymlink", func(s *skeleton) {
			s.symlink("/etc", "/link")
			s.dirAll("/link/a")
			s.mountFile("/link/a/f")
		}, []skelEntry{{Kind: skelSymlink, Path: "link", Data: "/etc"}}, errBelowSymlink},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &skeleton{top: "/top"}
			tc.list(s)
			if !errors.Is(s.err, tc.wantErr) {
				t.Errorf("err = %v, want %v", s.err, tc.wantErr)
			}
			if !reflect.DeepEqual(s.entries, tc.want) {
				t.Errorf("entries:\ngot  %v\nwant %v", s.entries, tc.want)
			}
		})
	}
}
