//go:build linux

// Package fsname names the file system a directory lives on, for the
// reports of the perf and cluster specs.
package fsname

import (
	"fmt"
	"syscall"
)

// Of names the file system dir lives on ("ext4", "tmpfs", "fuse", ...), or
// says which magic number it has when it is not one of the common ones.
func Of(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "unknown file system"
	}
	switch uint64(st.Type) {
	case 0xEF53:
		return "ext4"
	case 0x58465342:
		return "xfs"
	case 0x9123683E:
		return "btrfs"
	case 0x01021994:
		return "tmpfs"
	case 0x794C7630:
		return "overlayfs"
	case 0x6969:
		return "nfs"
	case 0xFF534D42:
		return "cifs"
	case 0x2FC12FC1:
		return "zfs"
	case 0x65735546:
		return "fuse"
	case 0x00c36400:
		return "ceph"
	case 0x0bd00bd0:
		return "lustre"
	}
	return fmt.Sprintf("file system 0x%x", uint64(st.Type))
}
