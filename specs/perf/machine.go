package perf

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/hicache-go/hicache/specs/internal/fsname"
)

// machine says where a run ran, for the summary and every chart: the CPU,
// the file system of the run's directory and the page cache's part in the
// reads.
type machine struct {
	cpu   string // the CPU's model name, or the architecture
	cpus  int
	fs    string // the file system of the run's directory
	dir   string
	reads string // how the reads met the page cache
}

// machineOf describes this machine for a run in dir. direct is
// -perf-direct, oldReads whether the old interface ran.
func machineOf(dir string, direct, oldReads bool) machine {
	m := machine{cpu: cpuModel(), cpus: runtime.NumCPU(), fs: fsname.Of(dir), dir: dir}
	switch {
	case !direct:
		m.reads = "reads from a warm page cache (files just written)"
	case oldReads:
		m.reads = "reads O_DIRECT for new and floor, old from a warm page cache"
	default:
		m.reads = "reads O_DIRECT"
	}
	return m
}

// caption is the one line a chart carries under its title.
func (m machine) caption() string {
	return fmt.Sprintf("%s, %d CPUs; %s; %s", m.cpu, m.cpus, m.fs, m.reads)
}

// String is the summary's two lines: the machine, then the directory and
// the page cache's part.
func (m machine) String() string {
	return fmt.Sprintf("machine: %s, %d CPUs, GOMAXPROCS %d\ndir %s (%s); %s", m.cpu, m.cpus, runtime.GOMAXPROCS(0), m.dir, m.fs, m.reads)
}

// cpuModel is the first "model name" of /proc/cpuinfo, or GOARCH where
// there is none.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			if v = strings.TrimSpace(v); v != "" {
				return v
			}
		}
	}
	return runtime.GOARCH
}
