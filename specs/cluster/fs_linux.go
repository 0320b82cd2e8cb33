//go:build linux

package cluster

import (
	"fmt"
	"syscall"
)

// fsName names the file system dir lives on, for the report.
func fsName(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "unknown file system"
	}
	switch uint64(st.Type) {
	case 0xEF53:
		return "ext4"
	case 0x58465342:
		return "xfs"
	case 0x01021994:
		return "tmpfs"
	case 0x6969:
		return "nfs"
	case 0x65735546:
		return "fuse"
	case 0x00c36400:
		return "ceph"
	case 0x0bd00bd0:
		return "lustre"
	}
	return fmt.Sprintf("file system 0x%x", uint64(st.Type))
}
