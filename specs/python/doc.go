// Package python holds the specs of the Python bridge (label "python"):
// they build cmd/libhicache as a C shared library, run the hicache_go
// package's driver (python/hicache_go/driver.py) in a python3 subprocess on
// a temp directory, and check its pages from Go, and Go's pages from
// Python. Where python3 or its torch module is missing the specs are
// skipped with the reason. It is an ordinary package whose specs register
// at init; the root suite_test.go pulls it in with a blank import.
package python
