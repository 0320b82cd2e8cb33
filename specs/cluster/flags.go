package cluster

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// minDuration is the shortest run of the concurrent-writers spec.
const minDuration = 20 * time.Second

// The flags, registered on flag.CommandLine, which the test binary parses
// before TestHiCache runs. Their Set methods check each value, so a bad one
// stops the test binary at start with the flag package's message and usage,
// whatever specs are selected.
var (
	flagDirs     dirList
	flagDuration = durationFlag(minDuration)
)

func init() {
	flag.Var(&flagDirs, "cluster-dirs", "`DIR,DIR[,DIR...]`: the same directory of one shared volume as mounted on each node, one node process per entry; HOST:DIR runs that node on HOST through ssh (the first entry must be local); default: three local processes on one temp dir")
	flag.Var(&flagDuration, "cluster-duration", "how long the concurrent-writers spec runs, `D` (at least 20s)")
}

// dirList is the value of -cluster-dirs: at least two directories, the
// first one local, each local one existing.
type dirList []string

// remote splits a -cluster-dirs entry into the host to run its node on
// through ssh and the directory there: "HOST:DIR", where HOST holds no '/'.
// A local entry has host "".
func remote(entry string) (host, dir string) {
	if h, d, ok := strings.Cut(entry, ":"); ok && h != "" && !strings.Contains(h, "/") {
		return h, d
	}
	return "", entry
}

// String returns the list as it is passed.
func (d *dirList) String() string { return strings.Join(*d, ",") }

// Set parses and checks a comma-separated list of directories.
func (d *dirList) Set(s string) error {
	var dirs []string
	var errs []error
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		dirs = append(dirs, p)
		if host, dir := remote(p); host != "" {
			if len(dirs) == 1 {
				errs = append(errs, fmt.Errorf("cluster: -cluster-dirs: the first entry, %s, must be a local directory: the suite works and copies the node binary through it", p))
			}
			if !filepath.IsAbs(dir) {
				errs = append(errs, fmt.Errorf("cluster: -cluster-dirs: %s: the directory on %s must be an absolute path", p, host))
			}
			continue
		}
		fi, err := os.Stat(p)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("cluster: -cluster-dirs: %w", err))
		case !fi.IsDir():
			errs = append(errs, fmt.Errorf("cluster: -cluster-dirs: %s is not a directory", p))
		}
	}
	if len(dirs) < 2 {
		errs = append(errs, fmt.Errorf("cluster: -cluster-dirs=%q names %d directories; want DIR,DIR[,DIR...], one per node, each the same shared directory as mounted there", s, len(dirs)))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	*d = dirs
	return nil
}

// durationFlag is the value of -cluster-duration: at least minDuration.
type durationFlag time.Duration

// String returns the duration.
func (f *durationFlag) String() string { return time.Duration(*f).String() }

// Set parses a duration of at least minDuration.
func (f *durationFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("cluster: -cluster-duration: %w", err)
	}
	if d < minDuration {
		return fmt.Errorf("cluster: -cluster-duration=%s: must be at least %s", d, minDuration)
	}
	*f = durationFlag(d)
	return nil
}
