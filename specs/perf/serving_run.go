package perf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hicache-go/hicache/pkg/hicachefile"
	"github.com/hicache-go/hicache/pkg/hostcache"
)

// servingRun is one preset's workload through one interface: a host pool
// and a store per TP rank, all stores in one directory, C client goroutines
// that prefetch and prefill, and one backup goroutine per writing rank, the
// cache controller's backup thread.
type servingRun struct {
	pl     *servingPlan
	iface  string // interfaceOld or interfaceNew
	dir    string
	direct bool
	ranks  []*servingRank
	// record receives every fetch and backup batch latency as it is
	// measured, for the gmeasure experiment; it must be safe for
	// concurrent use.
	record func(name string, d time.Duration)

	// limit is how many requests may start; 0 means all of the plan's.
	limit int

	mu  sync.Mutex // guards res and errs
	res *servingResult
}

// servingHost is one TP rank's host pool, and the slots of each client's
// two regions (a prompt being prefetched or prefilled, and the one before
// it, which may still be backing up). A preset's hosts serve both of its
// runs, so that the second does not fault a fresh pool in.
type servingHost struct {
	pool    *hostcache.Pool
	perPage int        // buffers per page
	regions [][]int64  // host indices: maxPages pages per region
	bufs    [][][]byte // each region's page buffers, perPage per page
}

// newServingHosts makes a host pool per rank of pl, with 2 regions per
// client of pl.maxPages pages each, faulted in. closeHosts releases them, on
// error too.
func newServingHosts(pl *servingPlan) (hosts []*servingHost, err error) {
	defer func() {
		if err != nil {
			err = errors.Join(err, closeHosts(hosts))
			hosts = nil
		}
	}()
	regions := 2 * pl.o.clients
	pages := max(pl.maxPages, 1)
	for range pl.ranks {
		cfg := pl.p.pool
		cfg.Pages = regions * pages
		pool, err := hostcache.New(cfg)
		if err != nil {
			return hosts, err
		}
		h := &servingHost{pool: pool, perPage: pool.BuffersPerPage()}
		hosts = append(hosts, h)
		for range regions {
			idx, err := pool.Alloc(pages * pl.ps)
			if err != nil {
				return hosts, err
			}
			bufs, err := pool.PageBuffers(idx)
			if err != nil {
				return hosts, err
			}
			for _, b := range bufs {
				clear(b) // fault the slots in before anything is timed
			}
			h.regions = append(h.regions, idx)
			h.bufs = append(h.bufs, bufs)
		}
	}
	return hosts, nil
}

// closeHosts closes the hosts' pools.
func closeHosts(hosts []*servingHost) error {
	var errs []error
	for _, h := range hosts {
		errs = append(errs, h.pool.Close())
	}
	return errors.Join(errs...)
}

// servingRank is one TP rank of a run: its host, and its store.
type servingRank struct {
	*servingHost
	id      int
	store   *hicachefile.Store
	backups chan *backup // nil for a rank that does not write
}

// backup is one request's new pages, queued to a writing rank's controller.
type backup struct {
	keys   []string
	region int
	first  int // the region page of keys[0]
	done   *sync.WaitGroup
}

// newServingRun opens a store per rank of pl in dir, on hosts. close
// releases them, on error too.
func newServingRun(pl *servingPlan, hosts []*servingHost, iface, dir string, direct bool, limit int, record func(string, time.Duration)) (r *servingRun, err error) {
	r = &servingRun{pl: pl, iface: iface, dir: dir, direct: direct, limit: limit, record: record,
		res: newServingResult(pl, iface)}
	defer func() {
		if err != nil {
			err = errors.Join(err, r.close())
			r = nil
		}
	}()
	for id, h := range hosts {
		rk := &servingRank{servingHost: h, id: id}
		scfg := pl.p.storeConfig(dir)
		scfg.TPRank, scfg.TPSize = id, pl.ranks
		scfg.MaxBytes = pl.capacity
		scfg.DirectIO = direct && iface == interfaceNew
		if rk.store, err = hicachefile.New(scfg); err != nil {
			return r, err
		}
		r.ranks = append(r.ranks, rk)
		if err := rk.store.RegisterMemPoolHost(h.pool); err != nil {
			return r, err
		}
		if id < pl.writers() {
			rk.backups = make(chan *backup, 2*pl.o.clients)
		}
	}
	return r, nil
}

// close removes the stores' files and closes the stores.
func (r *servingRun) close() error {
	var errs []error
	for _, rk := range r.ranks {
		errs = append(errs, rk.store.Clear(), rk.store.Close())
	}
	return errors.Join(errs...)
}

// pages returns pages from to to (not included) of region reg on rank rk:
// their host indices and their buffers.
func (rk *servingRank) pages(reg, from, to, ps int) ([]int64, [][]byte) {
	return rk.regions[reg][from*ps : to*ps], rk.bufs[reg][from*rk.perPage : to*rk.perPage]
}

// run drives the whole plan, or as much of it as starts before the
// -serving-duration deadline, and returns what it measured.
func (r *servingRun) run() *servingResult {
	var controllers sync.WaitGroup
	for _, rk := range r.ranks {
		if rk.backups != nil {
			controllers.Go(func() { r.controller(rk) })
		}
	}
	q := newUserQueue(r.pl.o.users, r.pl.o.turns, r.limit)
	start := time.Now()
	var deadline time.Time
	if r.pl.o.duration > 0 {
		deadline = start.Add(r.pl.o.duration)
	}
	var clients sync.WaitGroup
	for c := range r.pl.o.clients {
		clients.Go(func() { r.client(c, q, deadline) })
	}
	clients.Wait()
	for _, rk := range r.ranks {
		if rk.backups != nil {
			close(rk.backups)
		}
	}
	controllers.Wait()
	r.res.wall = time.Since(start)
	for _, rk := range r.ranks {
		st := rk.store.Stats()
		r.res.evicted += st.Evicted
		r.res.evictedBytes += st.EvictedBytes
		r.res.readBytes += st.GetBytes
		r.res.directBytes += st.DirectBytes
		r.res.setsByRank = append(r.res.setsByRank, st.Sets)
	}
	return r.res
}

// client is one closed-loop client: it takes the next turn of the next
// user, runs it, and goes on, alternating between its two regions. A region
// is reused only once the backup of the prompt it held is done, as the
// cache controller keeps host pages locked while they are written.
func (r *servingRun) client(c int, q *userQueue, deadline time.Time) {
	var pending [2]*sync.WaitGroup
	for i := 0; ; i++ {
		if !deadline.IsZero() && time.Now().After(deadline) {
			break
		}
		u, t, ok := q.next()
		if !ok {
			break
		}
		slot := i % 2
		if pending[slot] != nil {
			pending[slot].Wait()
		}
		pending[slot] = r.request(2*c+slot, u, t)
		q.done(u, t)
	}
	for _, p := range pending {
		if p != nil {
			p.Wait()
		}
	}
}

// request is one turn of one user, as the cache controller serves it:
// prefetch the stored prefix on every rank, prefill the rest, queue the new
// pages for backup. It returns what the backup's end waits on.
func (r *servingRun) request(reg, u, t int) *sync.WaitGroup {
	pl := r.pl
	conv := pl.convs[u]
	n := conv.prompts[t] / pl.ps
	keys := conv.keys[:n]

	// Prefetch, step 1: the stored prefix on each rank, MIN across ranks.
	hits := r.eachRank(func(rk *servingRank) int { return r.exists(rk, keys) })
	h := minOf(hits)
	// Step 2: fetch it, 128 pages at a time, stopping at the first batch
	// not fully served; MIN across ranks again.
	got := r.eachRank(func(rk *servingRank) int { return r.fetch(rk, reg, keys[:h]) })
	f := minOf(got)

	// Prefill: the pages the tier did not serve are computed, here stamped.
	r.eachRank(func(rk *servingRank) int {
		s := newStamper()
		for i := f; i < n; i++ {
			s.use(keys[i], r.stampRank(rk))
			_, bufs := rk.pages(reg, i, i+1, pl.ps)
			s.stamp(bufs)
		}
		return 0
	})

	r.mu.Lock()
	res := r.res
	res.requests++
	res.promptPages += int64(n)
	res.promptTokens += int64(conv.prompts[t])
	res.existPages += int64(h)
	res.hitPages += int64(f)
	for _, g := range got {
		res.fetchedBytes += int64(g) * int64(pl.p.pageBytes)
	}
	r.mu.Unlock()

	// Backup, on each writing rank's controller, while the client goes on.
	wg := &sync.WaitGroup{}
	if f < n {
		for _, rk := range r.ranks {
			if rk.backups != nil {
				wg.Add(1)
				rk.backups <- &backup{keys: keys[f:n], region: reg, first: f, done: wg}
			}
		}
	}
	return wg
}

// stampRank is the rank whose bytes a page holds on rk: MLA pages are the
// same on every rank.
func (r *servingRun) stampRank(rk *servingRank) int {
	if r.pl.mla {
		return 0
	}
	return rk.id
}

// eachRank runs f on every rank at once, as TP ranks do, and returns each
// rank's answer.
func (r *servingRun) eachRank(f func(rk *servingRank) int) []int {
	out := make([]int, len(r.ranks))
	if len(r.ranks) == 1 {
		out[0] = f(r.ranks[0])
		return out
	}
	var wg sync.WaitGroup
	for i, rk := range r.ranks {
		wg.Go(func() { out[i] = f(rk) })
	}
	wg.Wait()
	return out
}

func minOf(v []int) int {
	m := v[0]
	for _, x := range v[1:] {
		m = min(m, x)
	}
	return m
}

// exists is the controller's storage hit query: BatchExists over the keys
// in batches of 128, stopping at the first batch not wholly present.
func (r *servingRun) exists(rk *servingRank, keys []string) int {
	hit := 0
	for i := 0; i < len(keys); i += storageBatch {
		batch := keys[i:min(i+storageBatch, len(keys))]
		k := rk.store.BatchExists(batch)
		hit += k
		if k < len(batch) {
			break
		}
	}
	return hit
}

// fetch loads keys into region reg of rk, 128 pages at a time, stopping at
// the first batch not fully served, and returns how many pages, from the
// first, it served. Every page served is checked byte for byte.
func (r *servingRun) fetch(rk *servingRank, reg int, keys []string) int {
	ps := r.pl.ps
	_, all := rk.pages(reg, 0, len(keys), ps)
	poison(all)
	served := 0
	for i := 0; i < len(keys); i += storageBatch {
		j := min(i+storageBatch, len(keys))
		idx, _ := rk.pages(reg, i, j, ps)
		start := time.Now()
		k, err := r.getBatch(rk, keys[i:j], idx)
		end := time.Now()
		r.note(fetchCall, start, end, k, err)
		served += k
		if k < j-i {
			break
		}
	}
	s := newStamper()
	wrong := 0
	for i := range served {
		s.use(keys[i], r.stampRank(rk))
		_, bufs := rk.pages(reg, i, i+1, ps)
		if !s.check(bufs) {
			wrong++
			if wrong == 1 {
				r.fail(fmt.Errorf("perf: serving %s: rank %d: page %d (%s) came back wrong", r.iface, rk.id, i, keys[i]))
			}
		}
	}
	if wrong > 0 {
		r.mu.Lock()
		r.res.wrong += wrong
		r.mu.Unlock()
	}
	return served
}

// getBatch is one fetch call: BatchGetV1, or GetDummyFlatDataPage per page,
// BatchGet and SetFromFlatDataPage, as the controller's page_get does. It
// returns how many pages from the first were served.
func (r *servingRun) getBatch(rk *servingRank, keys []string, idx []int64) (int, error) {
	if r.iface == interfaceNew {
		ok, err := rk.store.BatchGetV1(keys, idx)
		return prefixTrue(ok), err
	}
	dsts := make([][]byte, len(keys))
	for i := range dsts {
		dsts[i] = rk.pool.GetDummyFlatDataPage()
	}
	ok, err := rk.store.BatchGet(keys, dsts)
	n := prefixTrue(ok)
	for i := range n {
		if serr := rk.pool.SetFromFlatDataPage(idx[i*r.pl.ps], dsts[i]); serr != nil {
			return i, errors.Join(err, fmt.Errorf("perf: SetFromFlatDataPage: %w", serr))
		}
	}
	return n, err
}

// prefixTrue counts the leading true entries of ok.
func prefixTrue(ok []bool) int {
	for i, v := range ok {
		if !v {
			return i
		}
	}
	return len(ok)
}

// controller is a writing rank's backup thread: it writes each queued
// request's new pages in batches of 128, stopping a backup at its first
// failed batch.
func (r *servingRun) controller(rk *servingRank) {
	ps := r.pl.ps
	for b := range rk.backups {
		for i := 0; i < len(b.keys); i += storageBatch {
			j := min(i+storageBatch, len(b.keys))
			idx, _ := rk.pages(b.region, b.first+i, b.first+j, ps)
			start := time.Now()
			n, err := r.setBatch(rk, b.keys[i:j], idx)
			end := time.Now()
			r.note(backupCall, start, end, n, err)
			if err != nil || n < j-i {
				r.mu.Lock()
				r.res.backupFailed++
				r.mu.Unlock()
				break
			}
		}
		b.done.Done()
	}
}

// setBatch is one backup call: BatchSetV1, or GetDataPage per page then
// BatchSet. It returns how many pages from the first were stored.
func (r *servingRun) setBatch(rk *servingRank, keys []string, idx []int64) (int, error) {
	if r.iface == interfaceNew {
		ok, err := rk.store.BatchSetV1(keys, idx)
		return prefixTrue(ok), err
	}
	values := make([][]byte, len(keys))
	for i := range values {
		var err error
		if values[i], err = rk.pool.GetDataPage(idx[i*r.pl.ps]); err != nil {
			return 0, fmt.Errorf("perf: GetDataPage: %w", err)
		}
	}
	ok, err := rk.store.BatchSet(keys, values)
	return prefixTrue(ok), err
}

// callKind tells fetch calls from backup calls.
type callKind int

const (
	fetchCall callKind = iota
	backupCall
)

// note records one storage call: its latency, its interval and its pages.
func (r *servingRun) note(kind callKind, start, end time.Time, pages int, err error) {
	d := end.Sub(start)
	r.record(callName(kind, r.iface), d)
	r.mu.Lock()
	defer r.mu.Unlock()
	c := &r.res.calls[kind]
	c.lat = append(c.lat, d)
	c.spans = append(c.spans, callSpan{start, end})
	c.pages += int64(pages)
	if kind == backupCall {
		r.res.backupBytes += int64(pages) * int64(r.pl.p.pageBytes)
	}
	if err != nil {
		r.res.errs = append(r.res.errs, err)
	}
}

// callName is the name of a timing, in the seed's vocabulary.
func callName(kind callKind, iface string) string {
	switch {
	case kind == fetchCall && iface == interfaceNew:
		return timeBatchGetV1
	case kind == fetchCall:
		return timeBatchGet
	case iface == interfaceNew:
		return timeBatchSetV1
	}
	return timeBatchSet
}

func (r *servingRun) fail(err error) {
	r.mu.Lock()
	r.res.errs = append(r.res.errs, err)
	r.mu.Unlock()
}

// userQueue hands out turns: a client takes the user at the head, and the
// user goes back to the tail once that turn's prefill is done, so one user's
// turns run in order and never two at once.
type userQueue struct {
	mu       sync.Mutex
	cond     *sync.Cond
	ready    []int // users whose next turn can start
	turn     []int // each user's next turn
	turns    int
	inflight int
	left     int // requests that may still start
}

func newUserQueue(users, turns, limit int) *userQueue {
	q := &userQueue{turns: turns, turn: make([]int, users), left: users * turns}
	if limit > 0 {
		q.left = min(q.left, limit)
	}
	q.cond = sync.NewCond(&q.mu)
	for u := range users {
		q.ready = append(q.ready, u)
	}
	return q
}

// next returns a user and its turn to run, waiting while every remaining
// turn belongs to a user already in flight; ok is false when none is left,
// or the limit has started.
func (q *userQueue) next() (user, turn int, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.ready) == 0 && q.left > 0 {
		if q.inflight == 0 {
			return 0, 0, false
		}
		q.cond.Wait()
	}
	if q.left == 0 {
		return 0, 0, false
	}
	q.left--
	user = q.ready[0]
	q.ready = q.ready[1:]
	q.inflight++
	return user, q.turn[user], true
}

// done puts user back in line for its next turn, if it has one.
func (q *userQueue) done(user, turn int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.inflight--
	q.turn[user] = turn + 1
	if turn+1 < q.turns {
		q.ready = append(q.ready, user)
	}
	q.cond.Broadcast()
}

// servingDir makes the directory of one run inside dir.
func servingDir(dir string, p preset, iface string) (string, error) {
	d := filepath.Join(dir, fmt.Sprintf("serving-%s-%s", p.name, iface))
	if err := os.Mkdir(d, 0o755); err != nil {
		return "", fmt.Errorf("perf: serving: %w", err)
	}
	return d, nil
}
