package perf

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"
)

// plotServing draws, for each preset, the CDF of its fetch and of its
// backup batch latencies, old and new on one chart each, with the report's
// plotCDF into dir: serving-<preset>-fetch-cdf.png and
// serving-<preset>-backup-cdf.png, each with an SVG beside it, captioned
// with where they ran. It returns the files written.
func plotServing(dir string, m machine, all [][]*servingResult) ([]string, error) {
	var files []string
	var errs []error
	for _, runs := range all {
		if len(runs) == 0 {
			continue
		}
		p := runs[0].pl.p
		for _, kind := range []callKind{fetchCall, backupCall} {
			series := map[string][]time.Duration{}
			names := ""
			for _, r := range runs {
				if len(r.calls[kind].lat) > 0 {
					series[r.iface] = r.calls[kind].lat
					if names != "" {
						names += " vs "
					}
					names += callName(kind, r.iface)
				}
			}
			if len(series) == 0 {
				continue
			}
			what := "fetch"
			if kind == backupCall {
				what = "backup"
			}
			title := fmt.Sprintf("Serving %s: latency of each %s batch call (%s)", p.name, what, names)
			path := filepath.Join(dir, fmt.Sprintf("serving-%s-%s-cdf.png", p.name, what))
			fs, err := plotCDF(path, title, m.caption(), series)
			files = append(files, fs...)
			errs = append(errs, err)
		}
	}
	return files, errors.Join(errs...)
}
