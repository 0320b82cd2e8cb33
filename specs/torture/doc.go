// Package torture holds the torture specs of pkg/hicachefile: a writer
// SIGKILLed at random moments, several processes writing, reading and
// clearing one directory, one store read and written while its files are
// evicted and cleared by itself and by another process (file churn), a batch
// file rewritten in place, a Dir moved away or a symlink Dir retargeted
// under readers whose reads all hit, identities whose SGLang suffixes
// coincide (suffix twins), a full file system, and hostile files, descriptor
// limits and replaced directories. Every served page is checked against the
// bytes its key was stamped with, so a stale, foreign, torn or zeroed page
// fails the spec; each spec reports its counts as report entries.
//
// The specs are labelled "torture" (and Serial where they start processes or
// mount a file system):
//
//	go tool ginkgo --label-filter=torture
//	go tool ginkgo --label-filter=torture -- -torture-duration=5m
//
// Child processes are re-executions of the test binary: the package's init
// runs the child named by $HICACHE_TORTURE_CHILD and exits, so the root
// suite needs nothing but the blank import.
//
// # Flags
//
// Passed to the test binary after "--":
//
//	-torture-duration=DUR  how long the timed specs run (default 20s, which
//	                       CI uses): the several-process and file-churn specs
//	                       run for DUR, and the crash spec kills its writer
//	                       for DUR and at least 50 times. Pass a few seconds
//	                       for a quick local run.
package torture
