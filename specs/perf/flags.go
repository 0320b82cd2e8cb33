package perf

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Interface choices for -interface, as on the seed's command line.
const (
	interfaceOld  = "old"
	interfaceNew  = "new"
	interfaceBoth = "both"
)

// flags holds the perf flags. They are defined on a FlagSet of their own, so
// that PrintUsage can list them alone, and registered on flag.CommandLine,
// which the test binary parses before TestHiCache runs.
var (
	flags = flag.NewFlagSet("perf", flag.ContinueOnError)

	flagSamples   = flags.Int("perf-samples", 5, "`N` samples per scenario, after one warm-up run")
	flagPresets   = flags.String("perf-presets", "seed,llama3-8b,deepseek-v3", "comma-separated model `presets`: "+strings.Join(presetNames(), ", "))
	flagInterface = flags.String("interface", interfaceBoth, "the interface(s) to time, the seed's `mode`: old, new or both")
	flagDir       = flags.String("perf-dir", "", "an existing `directory` to run in, such as an NVMe mount (default: a temp dir, removed afterwards); the specs work in a temporary subdirectory of it")
	flagPlotDir   = flags.String("perf-plot-dir", "perf-report", "the `directory` to draw the charts into, as PNG and SVG (created if need be; relative to the repository root); empty: no charts")
	flagDirect    = flags.Bool("perf-direct", false, "read with O_DIRECT: the new interface's store with DirectIO, and the floor's pread, so reads time the device, not the page cache (for data larger than RAM); the old interface and every write still go through the page cache (Linux only)")
)

func init() {
	flags.VisitAll(func(f *flag.Flag) { flag.CommandLine.Var(f.Value, f.Name, f.Usage) })
}

// options is the validated form of the flags.
type options struct {
	samples   int
	presets   []preset
	runOld    bool
	runNew    bool
	dir       string // "" means a temp dir
	plotDir   string // "" means no charts
	direct    bool   // new and floor read with O_DIRECT
	iface     string // old, new or both
	presetArg string
}

// CheckFlags validates the perf flags. The root suite calls it before
// RunSpecs, so a bad value stops the run at start whether or not the perf
// specs are selected.
func CheckFlags() error {
	_, err := parseOptions()
	return errors.Join(err, checkServingFlags())
}

// PrintUsage writes how to pass the perf flags, and each flag's meaning, to w.
func PrintUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: go tool ginkgo --label-filter=perf -- [-interface=old|new|both] [-perf-samples=N] [-perf-presets=P1,P2] [-perf-dir=DIR] [-perf-plot-dir=DIR] [-perf-direct]")
	fmt.Fprintln(w, "\nThe perf flags, passed to the test binary after --:")
	flags.SetOutput(w)
	flags.PrintDefaults()
	fmt.Fprintln(w, "\nGinkgo's own flags go before --: go tool ginkgo help run")
}

func parseOptions() (options, error) {
	o := options{samples: *flagSamples, dir: *flagDir, iface: *flagInterface, presetArg: *flagPresets, direct: *flagDirect, plotDir: *flagPlotDir}
	var errs []error
	if o.samples < 1 {
		errs = append(errs, fmt.Errorf("perf: -perf-samples=%d: must be at least 1", o.samples))
	}
	switch o.iface {
	case interfaceOld:
		o.runOld = true
	case interfaceNew:
		o.runNew = true
	case interfaceBoth:
		o.runOld, o.runNew = true, true
	default:
		errs = append(errs, fmt.Errorf("perf: -interface=%q: must be old, new or both", o.iface))
	}
	presets, err := parsePresets(o.presetArg)
	if err != nil {
		errs = append(errs, err)
	}
	o.presets = presets
	if o.dir != "" {
		fi, err := os.Stat(o.dir)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("perf: -perf-dir: %w", err))
		case !fi.IsDir():
			errs = append(errs, fmt.Errorf("perf: -perf-dir=%s: not a directory", o.dir))
		}
	}
	if o.direct && !directSupported {
		errs = append(errs, errors.New("perf: -perf-direct: O_DIRECT reads are supported only on Linux"))
	}
	return o, errors.Join(errs...)
}

// readMode says how the sides read, for report headers: "" without
// -perf-direct.
func (o options) readMode() string {
	switch {
	case !o.direct:
		return ""
	case o.runOld && o.runNew:
		return "reads: O_DIRECT for new and floor (old: page cache)"
	case o.runNew:
		return "reads: O_DIRECT for new and floor"
	}
	return "reads: O_DIRECT for floor (old: page cache)"
}

// parsePresets resolves a comma-separated list of preset names, in the order
// given and without repeats.
func parsePresets(s string) ([]preset, error) {
	var out []preset
	seen := map[string]bool{}
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" || seen[name] {
			continue
		}
		p, ok := presetByName(name)
		if !ok {
			return nil, fmt.Errorf("perf: unknown preset %q in -perf-presets; valid presets are %s", name, strings.Join(presetNames(), ", "))
		}
		seen[name] = true
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("perf: -perf-presets=%q names no preset; valid presets are %s", s, strings.Join(presetNames(), ", "))
	}
	return out, nil
}
