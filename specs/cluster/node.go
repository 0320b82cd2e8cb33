package cluster

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hicache-go/hicache/pkg/hicachefile"
	"github.com/hicache-go/hicache/pkg/hostcache"
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
	if n.pool, err = hostcache.New(poolConfig()); err != nil {
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

// store returns the node's store of spec, opening it on first use.
func (n *node) store(spec storeSpec) (*hicachefile.Store, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s, ok := n.stores[spec]; ok {
		return s, nil
	}
	s, err := hicachefile.New(hicachefile.Config{Dir: n.dir, ModelName: spec.Model,
		TPRank: spec.Rank, TPSize: max(spec.Size, 1), MaxBytes: spec.MaxBytes})
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
		rep.FS = fsName(n.dir)
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

// watch looks up r.V1 and r.Old every pollEvery until each has been served,
// or r.For passes. It sends "ready" after its first round (the keys are
// missing then, so the caches of a store and of the file system hold the
// misses, as they would on a busy node), and "hit" with the keys first
// served in each later round. The reply lists the keys never served.
func (n *node) watch(s *hicachefile.Store, r request, rep *reply) error {
	v1, old := r.V1, r.Old
	deadline := time.Now().Add(r.For)
	for round := 0; len(v1)+len(old) > 0 && time.Now().Before(deadline); round++ {
		ok1, c1, err := n.readV1(s, r.Store, v1, -1)
		ok2, c2, err2 := n.readOld(s, r.Store, old, -1)
		rep.Counts.add(c1)
		rep.Counts.add(c2)
		if err := errors.Join(err, err2); err != nil {
			return err
		}
		var got []string
		v1, got = split(v1, ok1, got)
		old, got = split(old, ok2, got)
		switch {
		case round == 0:
			n.event(r.ID, "ready", got)
		case len(got) > 0:
			n.event(r.ID, "hit", got)
		}
		time.Sleep(pollEvery)
	}
	rep.Keys = append(v1, old...)
	return nil
}

// split moves the keys whose ok is set from keys to got.
func split(keys []string, ok []bool, got []string) (rest, gotOut []string) {
	for i, k := range keys {
		if ok[i] {
			got = append(got, k)
		} else {
			rest = append(rest, k)
		}
	}
	return rest, got
}

// watchFS is watch without the store: it lists the store's V1 directory
// and stats r.Old's files by name, and reports the V1 keys seen when a batch
// file appears that was not listed at the first round, each old key when
// its file exists. It tells what the file system shows other clients, for
// comparison with the store.
func (n *node) watchFS(s *hicachefile.Store, r request, rep *reply) error {
	base := filepath.Base(s.FilePath("k"))
	suffix := strings.TrimSuffix(strings.TrimPrefix(base, "k"), ".bin")
	v1dir := filepath.Join(n.dir, "v1"+suffix)
	v1, old := r.V1, r.Old
	known := map[string]bool{}
	deadline := time.Now().Add(r.For)
	for round := 0; len(v1)+len(old) > 0 && time.Now().Before(deadline); round++ {
		var got []string
		if len(v1) > 0 {
			f, err := os.Open(v1dir)
			if err != nil && !os.IsNotExist(err) {
				return err
			}
			var names []string
			if err == nil {
				names, err = f.Readdirnames(-1)
				_ = f.Close()
				if err != nil {
					return err
				}
			}
			fresh := false
			for _, name := range names {
				if strings.HasSuffix(name, ".batch.bin") && !known[name] {
					known[name] = true
					fresh = round > 0
				}
			}
			if fresh {
				got, v1 = append(got, v1...), nil
			}
		}
		rest := old[:0:0]
		for _, k := range old {
			if _, err := os.Stat(s.FilePath(k)); err == nil {
				got = append(got, k)
			} else {
				rest = append(rest, k)
			}
		}
		old = rest
		switch {
		case round == 0:
			n.event(r.ID, "ready", got)
		case len(got) > 0:
			n.event(r.ID, "hit", got)
		}
		time.Sleep(pollEvery)
	}
	rep.Keys = append(v1, old...)
	return nil
}

// clearWatch reads r.V1 and r.Old every pollEvery while another node clears
// them and writes them again as generation r.Gen. A key moves on once it is
// missed or served at r.Gen; a page of an older generation served after
// that is stale, and wrong. It sends "stopped" when every key has moved on,
// and ends once every key has been served at r.Gen (or r.For passes). The
// reply lists the keys never served at r.Gen.
func (n *node) clearWatch(s *hicachefile.Store, r request, rep *reply) error {
	movedOn := map[string]bool{}
	fresh := map[string]bool{}
	keys := append(append([]string(nil), r.V1...), r.Old...)
	deadline := time.Now().Add(r.For)
	n.event(r.ID, "ready", nil)
	stopped := false
	for len(fresh) < len(keys) && time.Now().Before(deadline) {
		g1, c1, err := n.readV1Pages(s, r.Store, r.V1)
		g2, c2, err2 := n.readOldPages(s, r.Store, r.Old)
		rep.Counts.add(c1)
		rep.Counts.add(c2)
		if err := errors.Join(err, err2); err != nil {
			return err
		}
		for i, g := range append(g1, g2...) {
			k := keys[i]
			switch {
			case !g.hit || !g.good:
				movedOn[k] = true
			case g.st.gen() >= r.Gen:
				movedOn[k], fresh[k] = true, true
			case movedOn[k]:
				rep.Counts.Wrong++
				rep.Counts.note("node %d served %q of generation %d after it had missed it or served generation %d", n.id, k, g.st.gen(), r.Gen)
			}
		}
		if !stopped && len(movedOn) == len(keys) {
			stopped = true
			n.event(r.ID, "stopped", nil)
		}
		time.Sleep(pollEvery)
	}
	for _, k := range keys {
		if !fresh[k] {
			rep.Keys = append(rep.Keys, k)
		}
	}
	return nil
}

// corrupt damages the file at r.Path: "flip" inverts the byte at r.Off in
// place, "truncate" cuts the file to r.Off bytes.
func (n *node) corrupt(r request) error {
	p := filepath.Join(n.dir, r.Path)
	switch r.Mode {
	case "truncate":
		return os.Truncate(p, r.Off)
	case "flip":
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		b := make([]byte, 1)
		_, err = f.ReadAt(b, r.Off)
		if err == nil {
			b[0] ^= 0xff
			_, err = f.WriteAt(b, r.Off)
		}
		return errors.Join(err, f.Close())
	}
	return fmt.Errorf("cluster node: unknown corruption %q", r.Mode)
}

// refuseWatch reads r.V1 and r.Old every pollEvery until every key of r.Bad
// has been refused, or r.For passes. Every page served must check out, and
// r.Good keys must be served every time. It sends "refused" when the last
// bad key was refused. The reply lists the bad keys never refused.
func (n *node) refuseWatch(s *hicachefile.Store, r request, rep *reply) error {
	keys := append(append([]string(nil), r.V1...), r.Old...)
	bad, good := set(r.Bad), set(r.Good)
	refused := map[string]bool{}
	deadline := time.Now().Add(r.For)
	for len(refused) < len(bad) && time.Now().Before(deadline) {
		ok1, c1, err := n.readV1(s, r.Store, r.V1, -1)
		ok2, c2, err2 := n.readOld(s, r.Store, r.Old, -1)
		rep.Counts.add(c1)
		rep.Counts.add(c2)
		if err := errors.Join(err, err2); err != nil {
			return err
		}
		for i, ok := range append(ok1, ok2...) {
			k := keys[i]
			switch {
			case !ok && bad[k]:
				refused[k] = true
			case !ok && good[k]:
				rep.Counts.Wrong++
				rep.Counts.note("node %d missed %q, a good page beside a damaged one", n.id, k)
			}
		}
		time.Sleep(pollEvery)
	}
	n.event(r.ID, "refused", nil)
	for _, k := range r.Bad {
		if !refused[k] {
			rep.Keys = append(rep.Keys, k)
		}
	}
	return nil
}

// set returns the keys as a set.
func set(keys []string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// readAll reads r.V1 through BatchGetV1, 64 keys a call, and reads the
// misses again every pollEvery until all are served or r.For passes. The
// reply lists the keys never served.
func (n *node) readAll(s *hicachefile.Store, r request, rep *reply) error {
	left := r.V1
	deadline := time.Now().Add(r.For)
	for len(left) > 0 {
		var rest []string
		for i := 0; i < len(left); i += 64 {
			chunk := left[i:min(i+64, len(left))]
			ok, c, err := n.readV1(s, r.Store, chunk, -1)
			rep.Counts.add(c)
			if err != nil {
				return err
			}
			rest, _ = split(chunk, ok, rest)
		}
		left = rest
		if !time.Now().Before(deadline) {
			break
		}
		if len(left) > 0 {
			time.Sleep(pollEvery)
		}
	}
	rep.Keys = left
	return nil
}

// churnWindow is how long the keys of one window are written: writers of
// every node pick keys from the current window, so they race on the same
// keys, and readers read the current and last two windows.
const churnWindow = time.Second

// churn writes and reads at once for r.For. r.Store is shared by every
// node (same model, same TP rank) and r.Also[0] is this node's own TP rank
// of a model spread over ranks: the writer writes batches of 4 keys of the
// current window to both, through a random interface. r.Also[1:] are other
// ranks' stores, only read. The reader reads 8 keys at a time from any of
// them and checks every page. The reply holds the keys each store reported
// stored.
func (n *node) churn(r request, rep *reply) error {
	specs := append([]storeSpec{r.Store}, r.Also...)
	stores := make([]*hicachefile.Store, len(specs))
	for i, sp := range specs {
		s, err := n.store(sp)
		if err != nil {
			return err
		}
		stores[i] = s
	}
	writeTo := min(2, len(specs))
	start := time.Now()
	deadline := start.Add(r.For)
	window := func() int { return int(time.Since(start) / churnWindow) }
	keys := func(rng *rand.Rand, w, count int) []string {
		out := make([]string, 0, count)
		for _, j := range rng.Perm(32)[:count] {
			out = append(out, fmt.Sprintf("c-%d-%d", w, j))
		}
		return out
	}
	var wg sync.WaitGroup
	var errs [2]error
	var wc, rc counts
	stored := map[string][]string{}
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(uint64(r.Seed), 1))
		for time.Now().Before(deadline) {
			for i := range writeTo {
				ks := keys(rng, window(), 4)
				var ok []bool
				var err error
				if rng.IntN(3) == 0 {
					ok, err = n.writeOld(stores[i], specs[i], ks, 0)
				} else {
					ok, err = n.writeV1(stores[i], specs[i], ks, 0)
				}
				if err != nil {
					errs[0] = err
					return
				}
				for j, k := range ks {
					if ok[j] {
						wc.Written++
						stored[specs[i].String()] = append(stored[specs[i].String()], k)
					}
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(uint64(r.Seed), 2))
		for time.Now().Before(deadline) {
			i := rng.IntN(len(specs))
			w := max(0, window()-rng.IntN(3))
			ks := keys(rng, w, 8)
			var c counts
			var err error
			if rng.IntN(3) == 0 {
				_, c, err = n.readOld(stores[i], specs[i], ks, -1)
			} else {
				_, c, err = n.readV1(stores[i], specs[i], ks, -1)
			}
			rc.add(c)
			if err != nil {
				errs[1] = err
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
	wg.Wait()
	rep.Counts.add(wc)
	rep.Counts.add(rc)
	rep.Stored = stored
	return errors.Join(errs[:]...)
}

// evict is one side of the eviction spec. As "writer" it first writes
// r.Batches batches of 4 new keys at once through r.Store (which has
// MaxBytes), sends "ready", then writes a batch every r.Pace for r.For; as
// "reader" it takes r.Off keys as written already and the writer's pace as
// given. Both read 8 random keys written lately, or evicted already, every
// 2 ms, and check every page served.
func (n *node) evict(s *hicachefile.Store, r request, rep *reply) error {
	rng := rand.New(rand.NewPCG(uint64(r.Seed), 3))
	next := 0
	writeBatch := func() error {
		ks := make([]string, 0, 4)
		for range 4 {
			ks = append(ks, fmt.Sprintf("e-%d", next))
			next++
		}
		ok, err := n.writeV1(s, r.Store, ks, 0)
		for _, b := range ok {
			if b {
				rep.Counts.Written++
			}
		}
		return err
	}
	if r.Role == "writer" {
		for range r.Batches {
			if err := writeBatch(); err != nil {
				return err
			}
		}
		r.Off = int64(next)
		n.event(r.ID, "ready", nil)
	}
	start := time.Now()
	written := func() int { return int(r.Off) + int(time.Since(start)/r.Pace)*4 }
	for time.Since(start) < r.For {
		if r.Role == "writer" && next < written() {
			if err := writeBatch(); err != nil {
				return err
			}
		}
		hi := written()
		lo := max(0, hi-evictWindow)
		ks := make([]string, 0, 8)
		for _, j := range rng.Perm(hi - lo)[:min(8, hi-lo)] {
			ks = append(ks, fmt.Sprintf("e-%d", lo+j))
		}
		_, c, err := n.readV1(s, r.Store, ks, -1)
		rep.Counts.add(c)
		if err != nil {
			return err
		}
		time.Sleep(2 * time.Millisecond)
	}
	rep.Stats = s.Stats()
	return nil
}

// evictWindow is how many of the latest keys the eviction spec reads.
const evictWindow = 200
