//go:build !linux

package perf

// fsType names the file system dir lives on; only Linux is recognised.
func fsType(string) string { return "unknown file system" }
