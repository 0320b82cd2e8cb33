package cluster

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hicache-go/hicache/pkg/hicachefile"
	"github.com/hicache-go/hicache/pkg/hostcache"
	"github.com/hicache-go/hicache/specs/internal/fsname"
)

// The environment of a node process: its number and its directory. The test
// binary re-executed with envNode set runs nodeMain instead of the suite.
const (
	envNode = "HICACHE_CLUSTER_NODE"
	envDir  = "HICACHE_CLUSTER_DIR"
)

// pollEvery is how long a node waits between two rounds of lookups while it
// watches for pages to appear or go: the resolution of every latency the
// specs measure.
const pollEvery = time.Millisecond

func init() {
	if v := os.Getenv(envNode); v != "" {
		os.Exit(nodeMain(v, os.Getenv(envDir), os.Stdin, os.Stdout))
	}
}

// node is one node process: a pool and its stores on one directory.
type node struct {
	id     int
	dir    string
	pool   *hostcache.Pool
	ps     int
	seq    atomic.Uint32
	mu     sync.Mutex
	stores map[storeSpec]*hicachefile.Store
	outMu  sync.Mutex
	out    *json.Encoder
}

// nodeMain serves requests from in until it ends, and returns the exit
// code.
func nodeMain(id, dir string, in io.Reader, out io.Writer) int {
	n := &node{dir: dir, stores: map[storeSpec]*hicachefile.Store{}, out: json.NewEncoder(out)}
	var err error
	if n.id, err = strconv.Atoi(id); err != nil {
		fmt.Fprintf(os.Stderr, "cluster node: %s=%q: %v\n", envNode, id, err)
		return 2
	}
	if n.pool, err = hostcache.New(nodeShape.Config()); err != nil {
		fmt.Fprintf(os.Stderr, "cluster node %d: %v\n", n.id, err)
		return 1
	}
	n.ps = n.pool.Config().PageSize
	defer n.close()
	dec := json.NewDecoder(bufio.NewReader(in))
	for {
		var r request
		if err := dec.Decode(&r); err != nil {
			if errors.Is(err, io.EOF) {
				return 0
			}
			fmt.Fprintf(os.Stderr, "cluster node %d: %v\n", n.id, err)
			return 1
		}
		rep := reply{}
		if err := n.handle(r, &rep); err != nil {
			rep.Err = err.Error()
		}
		rep.ID, rep.Done = r.ID, true
		n.send(rep)
	}
}

// close closes the node's stores and pool.
func (n *node) close() {
	for _, s := range n.stores {
		_ = s.Close()
	}
	_ = n.pool.Close()
}

// send writes one line to the parent.
func (n *node) send(r reply) {
	n.outMu.Lock()
	defer n.outMu.Unlock()
	_ = n.out.Encode(r)
}

// event sends an event of request id.
func (n *node) event(id int, name string, keys []string) {
	n.send(reply{ID: id, Event: name, Keys: keys})
}

// config is the Config of the node's store of spec.
func (n *node) config(spec storeSpec) hicachefile.Config {
	return hicachefile.Config{Dir: n.dir, ModelName: spec.Model, TPRank: spec.Rank, TPSize: max(spec.Size, 1), MaxBytes: spec.MaxBytes}
}

// store returns the node's store of spec, opening it on first use.
func (n *node) store(spec storeSpec) (*hicachefile.Store, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s, ok := n.stores[spec]; ok {
		return s, nil
	}
	s, err := hicachefile.New(n.config(spec))
	if err != nil {
		return nil, err
	}
	if err := s.RegisterMemPoolHost(n.pool); err != nil {
		_ = s.Close()
		return nil, err
	}
	n.stores[spec] = s
	return s, nil
}

// handle runs one request, filling rep.
func (n *node) handle(r request, rep *reply) error {
	s, err := n.store(r.Store)
	if err != nil {
		return err
	}
	switch r.Op {
	case "stats":
		rep.Stats = s.Stats()
		rep.FS = fsname.Of(n.dir)
		return nil
	case "write":
		return n.write(s, r, rep)
	case "read":
		ok1, c1, err := n.readV1(s, r.Store, r.V1, -1)
		ok2, c2, err2 := n.readOld(s, r.Store, r.Old, -1)
		rep.OK = append(ok1, ok2...)
		rep.Counts.add(c1)
		rep.Counts.add(c2)
		return errors.Join(err, err2)
	case "watch":
		return n.watch(s, r, rep)
	case "watchfs":
		return n.watchFS(s, r, rep)
	case "clear":
		if err := s.Clear(); err != nil {
			return err
		}
		n.event(r.ID, "cleared", nil)
		return n.write(s, r, rep)
	case "clearwatch":
		return n.clearWatch(s, r, rep)
	case "corrupt":
		return n.corrupt(r)
	case "refusewatch":
		return n.refuseWatch(s, r, rep)
	case "readall":
		return n.readAll(s, r, rep)
	case "churn":
		return n.churn(r, rep)
	case "evict":
		return n.evict(s, r, rep)
	}
	return fmt.Errorf("cluster node: unknown op %q", r.Op)
}

// tag names the pages of spec's store: a page read through a store of
// another model or rank fails its check.
func tag(spec storeSpec) string {
	return fmt.Sprintf("%s|%d|%d", spec.Model, spec.Rank, max(spec.Size, 1))
}

// write stores r.V1 through BatchSetV1 and r.Old through BatchSet, each page
// stamped with this node, the store's rank and r.Gen, and reports where the
// pages went.
func (n *node) write(s *hicachefile.Store, r request, rep *reply) error {
	ok1, err := n.writeV1(s, r.Store, r.V1, r.Gen)
	ok2, err2 := n.writeOld(s, r.Store, r.Old, r.Gen)
	rep.OK = append(ok1, ok2...)
	for i, k := range r.V1 {
		if loc, found := s.Locate(k); found && ok1[i] {
			rep.Locs = append(rep.Locs, located{Key: k, Path: n.rel(loc.Path), Off: loc.Offset, Len: loc.Length})
		}
	}
	for i, k := range r.Old {
		if ok2[i] {
			rep.Locs = append(rep.Locs, located{Key: k, Path: n.rel(s.FilePath(k)), Len: int64(n.pool.PageBytes())})
		}
	}
	return errors.Join(err, err2)
}

// rel returns p relative to the node's directory.
func (n *node) rel(p string) string {
	r, err := filepath.Rel(n.dir, p)
	if err != nil {
		return p
	}
	return r
}

// writeV1 writes keys' pages through BatchSetV1.
func (n *node) writeV1(s *hicachefile.Store, spec storeSpec, keys []string, gen int) ([]bool, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	idx, err := n.pool.Alloc(len(keys) * n.ps)
	if err != nil {
		return make([]bool, len(keys)), err
	}
	defer func() { _ = n.pool.Free(idx) }()
	flat := n.pool.GetDummyFlatDataPage()
	for i, k := range keys {
		fillPage(flat, k, tag(spec), newStamp(n.id, spec.Rank, gen, n.seq.Add(1)))
		if err := n.pool.SetFromFlatDataPage(idx[i*n.ps], flat); err != nil {
			return make([]bool, len(keys)), err
		}
	}
	return s.BatchSetV1(keys, idx)
}

// writeOld writes keys' pages through BatchSet.
func (n *node) writeOld(s *hicachefile.Store, spec storeSpec, keys []string, gen int) ([]bool, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	vals := make([][]byte, len(keys))
	for i, k := range keys {
		vals[i] = n.pool.GetDummyFlatDataPage()
		fillPage(vals[i], k, tag(spec), newStamp(n.id, spec.Rank, gen, n.seq.Add(1)))
	}
	return s.BatchSet(keys, vals)
}

// served is what a read made of one key: hit says the store served it, and
// then good says its bytes checked out and st is its stamp.
type served struct {
	hit, good bool
	st        stamp
}

// readV1 reads keys through BatchGetV1 and checks every page served. A page
// of a generation below minGen counts as wrong too (-1: any).
func (n *node) readV1(s *hicachefile.Store, spec storeSpec, keys []string, minGen int) ([]bool, counts, error) {
	got, c, err := n.readV1Pages(s, spec, keys)
	return hits(got, keys, minGen, &c), c, err
}

// readV1Pages reads keys through BatchGetV1 and checks each page served.
func (n *node) readV1Pages(s *hicachefile.Store, spec storeSpec, keys []string) ([]served, counts, error) {
	var c counts
	got := make([]served, len(keys))
	if len(keys) == 0 {
		return got, c, nil
	}
	idx, err := n.pool.Alloc(len(keys) * n.ps)
	if err != nil {
		return got, c, err
	}
	defer func() { _ = n.pool.Free(idx) }()
	ok, err := s.BatchGetV1(keys, idx)
	for i, k := range keys {
		if !ok[i] {
			c.Misses++
			continue
		}
		flat, perr := n.pool.GetDataPage(idx[i*n.ps])
		if perr != nil {
			return got, c, perr
		}
		got[i] = n.check(flat, k, spec, &c, "v1")
	}
	return got, c, err
}

// readOld reads keys through BatchGet and checks every page served.
func (n *node) readOld(s *hicachefile.Store, spec storeSpec, keys []string, minGen int) ([]bool, counts, error) {
	got, c, err := n.readOldPages(s, spec, keys)
	return hits(got, keys, minGen, &c), c, err
}

// readOldPages reads keys through BatchGet and checks each page served.
func (n *node) readOldPages(s *hicachefile.Store, spec storeSpec, keys []string) ([]served, counts, error) {
	var c counts
	got := make([]served, len(keys))
	if len(keys) == 0 {
		return got, c, nil
	}
	dsts := make([][]byte, len(keys))
	for i := range dsts {
		dsts[i] = n.pool.GetDummyFlatDataPage()
	}
	ok, err := s.BatchGet(keys, dsts)
	for i, k := range keys {
		if !ok[i] {
			c.Misses++
			continue
		}
		got[i] = n.check(dsts[i], k, spec, &c, "old")
	}
	return got, c, err
}

// check checks one served page of key and counts it.
func (n *node) check(flat []byte, key string, spec storeSpec, c *counts, iface string) served {
	c.Checked++
	st, good := checkPage(flat, key, tag(spec))
	if !good {
		c.Wrong++
		c.note("node %d, %s: page of %q through %s is not the page of its key, model and rank (stamp %x)", n.id, spec, key, iface, uint64(st))
	}
	return served{hit: true, good: good, st: st}
}

// hits turns served pages into one bool per key, counting a page of a
// generation below minGen as wrong.
func hits(got []served, keys []string, minGen int, c *counts) []bool {
	ok := make([]bool, len(got))
	for i, g := range got {
		ok[i] = g.hit && g.good
		if g.hit && g.good && g.st.gen() < minGen {
			c.Wrong++
			c.note("page of %q is of generation %d, older than %d", keys[i], g.st.gen(), minGen)
			ok[i] = false
		}
	}
	return ok
}
