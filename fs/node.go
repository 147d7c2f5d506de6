package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// node serves a file, directory or symlink inside a valid store path from
// the backing directory. It is go-fuse's loopback node, with the kernel
// told to keep file contents and directory listings cached: valid paths
// never change. The mount is read-only, so no write reaches it.
type node struct {
	*gofs.LoopbackNode
}

var (
	_ gofs.NodeWrapChilder    = (*node)(nil)
	_ gofs.NodeOpener         = (*node)(nil)
	_ gofs.NodeOpendirHandler = (*node)(nil)
)

// WrapChild makes the nodes go-fuse creates below this one ours too.
func (n *node) WrapChild(ctx context.Context, ops gofs.InodeEmbedder) gofs.InodeEmbedder {
	return &node{ops.(*gofs.LoopbackNode)}
}

// Open opens the backing file; go-fuse hands its descriptor to the kernel
// for passthrough reads where the kernel supports that (6.9+).
func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	fh, fuseFlags, errno := n.LoopbackNode.Open(ctx, flags)
	return fh, fuseFlags | fuse.FOPEN_KEEP_CACHE, errno
}

// OpendirHandle lists the backing directory once; the kernel keeps it.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	fh, fuseFlags, errno := n.LoopbackNode.OpendirHandle(ctx, flags)
	return fh, fuseFlags | fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, errno
}
