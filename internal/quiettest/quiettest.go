// Package quiettest runs a package's plain Go tests quietly under the
// ginkgo CLI.
//
// `go tool ginkgo -r` runs the Ginkgo suite and also every package whose
// tests are plain Go tests (pkg/...). It runs those as test binaries with
// --test.v, always (onsi/ginkgo#508), so each test printed its "=== RUN" and
// "--- PASS" lines: hundreds of lines that hid the result. A package whose
// TestMain calls Main prints under the ginkgo CLI what `go test` prints for
// it: one line when it passes, and each failure in full with its log.
// Everywhere else (go test, go test -v, gotestsum) nothing changes.
package quiettest

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"
)

// Main runs the tests of the package importPath and exits with their status,
// as a TestMain does. When the ginkgo CLI started the binary, it turns the
// CLI's -v off and ends with go test's one-line summary for the package.
func Main(m *testing.M, importPath string) {
	flag.Parse()
	quiet := fromGinkgoCLI(os.Args[1:])
	if quiet {
		if err := flag.Set("test.v", "false"); err != nil {
			quiet = false // a testing package without -test.v: leave it be
		}
	}
	start := time.Now()
	code := m.Run()
	if quiet {
		status := "ok  "
		if code != 0 {
			status = "FAIL"
		}
		fmt.Printf("%s\t%s\t%.3fs\n", status, importPath, time.Since(start).Seconds())
	}
	os.Exit(code)
}

// fromGinkgoCLI reports whether args are what the ginkgo CLI passes a plain
// Go test binary. It alone spells -v "--test.v"; go test passes
// "-test.v=true" for -v and "-test.v=test2json" for -json.
func fromGinkgoCLI(args []string) bool {
	return slices.Contains(args, "--test.v")
}
