package cluster

import (
	"fmt"
	"time"

	"github.com/hicache-go/hicache/pkg/hicachefile"
)

// The parent drives each node over the node's stdin and stdout, one JSON
// object a line: a request, then any number of events and one final reply
// carrying the request's ID. The parent stamps every line with its own clock
// as it arrives, so latencies never mix two hosts' clocks.

// storeSpec names one store a node opens: the model, the TP rank and size,
// and MaxBytes. A node keeps one store per distinct spec, all on its
// directory and all with its one pool registered.
type storeSpec struct {
	Model    string `json:"model"`
	Rank     int    `json:"rank,omitempty"`
	Size     int    `json:"size,omitempty"`
	MaxBytes int64  `json:"max_bytes,omitempty"`
}

func (s storeSpec) String() string {
	return fmt.Sprintf("%s/tp%d-of-%d/max%d", s.Model, s.Rank, max(s.Size, 1), s.MaxBytes)
}

// request is one command to a node. Op says which; the other fields are
// its arguments (see node.go for each op).
type request struct {
	ID    int         `json:"id"`
	Op    string      `json:"op"`
	Store storeSpec   `json:"store"`
	Also  []storeSpec `json:"also,omitempty"` // further stores to read (churn)
	// V1 and Old are the keys to go through each interface.
	V1  []string `json:"v1,omitempty"`
	Old []string `json:"old,omitempty"`
	// Bad and Good are keys expected to be refused and to stay served.
	Bad   []string `json:"bad,omitempty"`
	Good  []string `json:"good,omitempty"`
	Stamp stamp    `json:"stamp,omitempty"`
	// Gen is the generation that replaces the old one (clear).
	Gen  int           `json:"gen,omitempty"`
	For  time.Duration `json:"for,omitempty"`  // how long to run or wait
	Path string        `json:"path,omitempty"` // relative to the node's dir
	Off  int64         `json:"off,omitempty"`
	Mode string        `json:"mode,omitempty"` // corrupt: flip or truncate
	// Role and Pace configure the eviction run.
	Role    string        `json:"role,omitempty"`
	Pace    time.Duration `json:"pace,omitempty"`
	Batches int           `json:"batches,omitempty"`
	Seed    int64         `json:"seed,omitempty"`
}

// counts tallies what a node checked.
type counts struct {
	Checked int64    `json:"checked"` // pages served and checked
	Wrong   int64    `json:"wrong"`   // pages served with wrong bytes, or stale
	Misses  int64    `json:"misses"`
	Written int64    `json:"written"` // pages reported stored
	Why     []string `json:"why,omitempty"`
}

// add adds o to c, keeping a few reasons.
func (c *counts) add(o counts) {
	c.Checked += o.Checked
	c.Wrong += o.Wrong
	c.Misses += o.Misses
	c.Written += o.Written
	for _, w := range o.Why {
		c.note("%s", w)
	}
}

// note keeps the first few reasons for wrong pages.
func (c *counts) note(format string, args ...any) {
	if len(c.Why) < 8 {
		c.Why = append(c.Why, fmt.Sprintf(format, args...))
	}
}

// located is where a write put one key's page, relative to the node's dir.
type located struct {
	Key  string `json:"key"`
	Path string `json:"path"`
	Off  int64  `json:"off"`
	Len  int64  `json:"len"`
}

// reply is an event (Event set) or the final reply (Done) to a request.
type reply struct {
	ID     int                 `json:"id"`
	Event  string              `json:"event,omitempty"`
	Done   bool                `json:"done,omitempty"`
	Err    string              `json:"err,omitempty"`
	Keys   []string            `json:"keys,omitempty"`
	OK     []bool              `json:"ok,omitempty"`
	Locs   []located           `json:"locs,omitempty"`
	Counts counts              `json:"counts"`
	Stored map[string][]string `json:"stored,omitempty"` // keys per storeSpec.String()
	Stats  hicachefile.Stats   `json:"stats"`
	FS     string              `json:"fs,omitempty"`

	at time.Time // arrival, by the parent's clock
}
