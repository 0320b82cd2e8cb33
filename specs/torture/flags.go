package torture

import (
	"flag"
	"fmt"
	"time"
)

// minDuration is the least -torture-duration accepted.
const minDuration = time.Second

// durationFlag is a time.Duration flag that refuses values below
// minDuration when it is parsed, so that a bad value stops the test binary
// before any spec runs, with the flag package's usage message.
type durationFlag time.Duration

func (d *durationFlag) String() string { return time.Duration(*d).String() }

func (d *durationFlag) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("torture: %w", err)
	}
	if v < minDuration {
		return fmt.Errorf("torture: -torture-duration=%s: must be at least %s", s, minDuration)
	}
	*d = durationFlag(v)
	return nil
}

// flagDuration is -torture-duration, registered on flag.CommandLine, which
// the test binary parses before the suite runs.
var flagDuration = durationFlag(20 * time.Second)

func init() {
	flag.Var(&flagDuration, "torture-duration", "how long the timed torture specs run, `DUR` (at least 1s): the several-process and file-churn specs run for DUR, the crash spec kills its writer for DUR and at least 50 times")
}

// duration returns the value of -torture-duration.
func duration() time.Duration { return time.Duration(flagDuration) }
