// Package hicache_test is the one root Ginkgo suite. Spec packages under
// specs/ register their specs at init and are pulled in by blank imports, so
// that `go tool ginkgo -r` runs every spec exactly once.
package hicache_test

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	_ "github.com/hicache-go/hicache/specs/cluster"
	_ "github.com/hicache-go/hicache/specs/hicachefile"
	_ "github.com/hicache-go/hicache/specs/hostcache"
	"github.com/hicache-go/hicache/specs/perf"
	_ "github.com/hicache-go/hicache/specs/python"
	_ "github.com/hicache-go/hicache/specs/torture"
)

func init() {
	// A flag the test binary cannot parse (-nosuchflag, -perf-samples=abc)
	// prints what was wrong and then this, not Ginkgo's 200 lines of help.
	flag.CommandLine.Usage = func() {
		perf.PrintUsage(os.Stderr)
		printSpecFlags(os.Stderr, "cluster-", "torture-")
	}
}

// printSpecFlags lists the flags of flag.CommandLine whose names start with
// one of prefixes, so that a bad -cluster-dirs or -torture-duration is
// followed by the flag it names and not by the perf flags alone.
func printSpecFlags(w io.Writer, prefixes ...string) {
	fs := flag.NewFlagSet("specs", flag.ContinueOnError)
	flag.CommandLine.VisitAll(func(f *flag.Flag) {
		for _, p := range prefixes {
			if strings.HasPrefix(f.Name, p) {
				fs.Var(f.Value, f.Name, f.Usage)
			}
		}
	})
	fmt.Fprintln(w, "\nThe cluster and torture specs' flags, also after --:")
	fs.SetOutput(w)
	fs.PrintDefaults()
}

func TestHiCache(t *testing.T) {
	// A bad perf flag stops the run before any spec, whatever is selected.
	if err := perf.CheckFlags(); err != nil {
		fmt.Fprintf(os.Stderr, "%v\n\n", err)
		perf.PrintUsage(os.Stderr)
		os.Exit(2)
	}
	RegisterFailHandler(Fail)
	// A label filter (the perf specs alone, or all but them) would print a
	// row of S for every spec it leaves out.
	suiteConfig, reporterConfig := GinkgoConfiguration()
	reporterConfig.SilenceSkips = true
	RunSpecs(t, "HiCache", suiteConfig, reporterConfig)
}
