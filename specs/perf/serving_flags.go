package perf

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The Serving scenario's flags, on the perf FlagSet so that PrintUsage lists
// them with the others. Package-level variables are initialised before any
// init function runs, so flags.go's init registers these too.
var (
	flagServingUsers    = flags.Int("serving-users", 16, "Serving: `N` users, each one multi-turn conversation")
	flagServingTurns    = flags.Int("serving-turns", 4, "Serving: `N` turns per conversation")
	flagServingClients  = flags.Int("serving-clients", 4, "Serving: `N` concurrent clients in a closed loop")
	flagServingCapacity = flags.String("serving-capacity", "0.5", "Serving: each store's MaxBytes, as a `fraction` of its working set (0 < f <= 1), or a size such as 512MiB")
	flagServingMLATP    = flags.Int("serving-mla-tp", 8, "Serving: `N` TP ranks for MLA presets (deepseek-v3), whose own TP size is 1: rank 0 writes, every rank reads; MHA presets keep their own TP size")
	flagServingDuration = flags.Duration("serving-duration", 6*time.Second, "Serving: no new request starts after this `duration` per preset and interface (requests in flight finish); 0 means no limit")
)

// servingOptions is the validated form of the Serving flags.
type servingOptions struct {
	users, turns, clients int
	mlaTP                 int // TP ranks of an MLA preset
	// capFraction is MaxBytes as a fraction of the working set, when
	// capBytes is 0.
	capFraction float64
	capBytes    int64
	duration    time.Duration // 0: no limit
	capArg      string
}

// parseServingOptions validates the Serving flags.
func parseServingOptions() (servingOptions, error) {
	o := servingOptions{users: *flagServingUsers, turns: *flagServingTurns, clients: *flagServingClients, mlaTP: *flagServingMLATP,
		duration: *flagServingDuration, capArg: *flagServingCapacity}
	var errs []error
	for _, f := range []struct {
		name string
		v    int
	}{{"serving-users", o.users}, {"serving-turns", o.turns}, {"serving-clients", o.clients}, {"serving-mla-tp", o.mlaTP}} {
		if f.v < 1 {
			errs = append(errs, fmt.Errorf("perf: -%s=%d: must be at least 1", f.name, f.v))
		}
	}
	if o.duration < 0 {
		errs = append(errs, fmt.Errorf("perf: -serving-duration=%s: must not be negative", o.duration))
	}
	var err error
	if o.capFraction, o.capBytes, err = parseCapacity(o.capArg); err != nil {
		errs = append(errs, err)
	}
	return o, errors.Join(errs...)
}

// checkServingFlags reports a bad Serving flag; CheckFlags calls it.
func checkServingFlags() error {
	_, err := parseServingOptions()
	return err
}

// byteUnits are the suffixes -serving-capacity accepts for a size.
var byteUnits = []struct {
	suffix string
	n      int64
}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}}

// parseCapacity reads -serving-capacity: a fraction in (0, 1] of each
// store's working set, or a size with a unit (B, KiB, MiB, GiB).
func parseCapacity(s string) (fraction float64, size int64, err error) {
	s = strings.TrimSpace(s)
	for _, u := range byteUnits {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, perr := strconv.ParseFloat(strings.TrimSpace(num), 64)
			if perr != nil || v <= 0 {
				return 0, 0, fmt.Errorf("perf: -serving-capacity=%q: want a fraction in (0, 1] or a positive size such as 512MiB", s)
			}
			return 0, int64(v * float64(u.n)), nil
		}
	}
	v, perr := strconv.ParseFloat(s, 64)
	if perr != nil || v <= 0 || v > 1 {
		return 0, 0, fmt.Errorf("perf: -serving-capacity=%q: want a fraction in (0, 1] or a positive size such as 512MiB", s)
	}
	return v, 0, nil
}
