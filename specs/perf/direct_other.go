//go:build !linux

package perf

// directSupported reports whether -perf-direct can work here: only Linux.
const directSupported = false

// readPageDirect never reads: CheckFlags rejects -perf-direct off Linux.
func readPageDirect(string, [][]byte) (bool, string, error) {
	return false, "O_DIRECT reads are supported only on Linux", nil
}

// syncFS does nothing off Linux: the timings there may include the
// writeback of the timing before.
func syncFS(string) error { return nil }
