package perf

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/hicache-go/hicache/pkg/hicachefile"
	"github.com/hicache-go/hicache/pkg/hostcache"
)

// storageBatch is SGLang's STORAGE_BATCH_SIZE: the cache controller asks
// the storage tier about, fetches and backs up at most this many pages per
// call.
const storageBatch = 128

// servingSeed seeds every conversation: the same flags give the same tokens,
// keys and pages on every run.
const servingSeed = 0x5e12f1a6

// servingPoolBudget is about how much host pool memory a Serving run takes,
// over all ranks, with the default flags. The length of a question and of an
// answer scales with it, in pages: many short pages for small models, a few
// long ones for big ones, so every preset moves about the same bytes.
const servingPoolBudget = 1 << 30

// vocab bounds the synthetic token ids, as a Llama-3 vocabulary does.
const vocab = 128256

// servingPlan is one preset's workload: who asks what, which pages that
// makes, and how the stores are bounded.
type servingPlan struct {
	p     preset
	o     servingOptions
	ranks int  // TP ranks, one store and one host pool each
	mla   bool // one writer (rank 0), every rank reads
	ps    int  // tokens per page

	unit      float64 // mean pages per question and per answer
	sysTokens int     // the shared system prompt
	minTurn   int     // shortest question or answer, tokens
	maxTurn   int     // longest
	convs     []conversation
	maxPages  int   // full pages of the longest prompt
	distinct  int   // distinct pages over every prompt: a writing store's working set
	capacity  int64 // MaxBytes of each store
}

// conversation is one user's dialogue: the system prompt, then a question
// and an answer per turn. keys chain over the full pages of all of it.
type conversation struct {
	keys    []string // the page keys of the whole conversation, in order
	prompts []int    // tokens of each turn's prompt: everything before it, then its question
}

// newServingPlan builds the workload of preset p from the flags. It is
// deterministic: it depends on the flags and the preset only.
func newServingPlan(p preset, o servingOptions) *servingPlan {
	pl := &servingPlan{p: p, o: o, ranks: max(p.tpSize, 1), mla: p.pool.Kind == hostcache.MLA, ps: p.pool.PageSize}
	if pl.mla && p.tpSize <= 1 {
		// An MLA preset's page is the same on every rank, so the
		// comparison runs it at TP 1; serving runs it the way
		// DeepSeek-V3 is deployed, on 8 ranks that all read.
		pl.ranks = o.mlaTP
	}
	// Each client holds two prompts' pages on every rank (one being
	// prefetched or prefilled, one being backed up), and the longest
	// prompt is about (2 + 2*turns) units of pages.
	perUnit := 2 * float64(o.clients) * float64(2+2*o.turns) * float64(p.pageBytes) * float64(pl.ranks)
	pl.unit = min(max(servingPoolBudget/perUnit, 0.25), 32)
	unitTokens := pl.unit * float64(pl.ps)
	// At least a page and a half of system prompt, so every user shares
	// at least one page.
	pl.sysTokens = max(int(math.Round(2*unitTokens)), 3*pl.ps/2)
	pl.minTurn = max(int(math.Round(unitTokens/2)), 1)
	pl.maxTurn = max(int(math.Round(3*unitTokens/2)), pl.minTurn)

	sysRng := rand.New(rand.NewPCG(servingSeed, 0))
	sys := make([]uint32, pl.sysTokens)
	for i := range sys {
		sys[i] = uint32(sysRng.IntN(vocab))
	}
	seen := map[string]bool{}
	for u := range o.users {
		rng := rand.New(rand.NewPCG(servingSeed, uint64(u)+1))
		tokens := append([]uint32(nil), sys...)
		var c conversation
		for range o.turns {
			tokens = appendTokens(rng, tokens, pl.minTurn+rng.IntN(pl.maxTurn-pl.minTurn+1)) // question
			c.prompts = append(c.prompts, len(tokens))
			tokens = appendTokens(rng, tokens, pl.minTurn+rng.IntN(pl.maxTurn-pl.minTurn+1)) // answer
		}
		c.keys = chainKeys(tokens, pl.ps)
		last := c.prompts[len(c.prompts)-1] / pl.ps
		pl.maxPages = max(pl.maxPages, last)
		for _, k := range c.keys[:last] {
			seen[k] = true
		}
		pl.convs = append(pl.convs, c)
	}
	pl.distinct = len(seen)
	pl.capacity = o.capBytes
	if pl.capacity == 0 {
		pl.capacity = int64(o.capFraction * float64(pl.workingSet()))
	}
	return pl
}

func appendTokens(rng *rand.Rand, tokens []uint32, n int) []uint32 {
	for range n {
		tokens = append(tokens, uint32(rng.IntN(vocab)))
	}
	return tokens
}

// chainKeys returns the key of every full page of tokens, as SGLang's
// get_hash_str does: the hex SHA-256 of the previous page's digest and the
// page's token ids, so a page's key names its whole prefix.
func chainKeys(tokens []uint32, ps int) []string {
	var prev []byte
	keys := make([]string, 0, len(tokens)/ps)
	buf := make([]byte, 0, 32+4*ps)
	for i := 0; i+ps <= len(tokens); i += ps {
		buf = append(buf[:0], prev...)
		for _, t := range tokens[i : i+ps] {
			buf = binary.LittleEndian.AppendUint32(buf, t)
		}
		sum := sha256.Sum256(buf)
		prev = sum[:]
		keys = append(keys, hex.EncodeToString(sum[:]))
	}
	return keys
}

// workingSet is the bytes of the files a writing store would hold at the
// end of the run, were nothing evicted: every distinct page, with at most
// its V1 index entry and a batch file trailer of its own (an old-format
// file is the page alone).
func (pl *servingPlan) workingSet() int64 {
	perPage := int64(pl.p.pageBytes) + hicachefile.IndexSize([]string{pl.convs[0].keys[0]}) + hicachefile.TrailerSize
	return int64(pl.distinct) * perPage
}

// writers is how many ranks back pages up: all of them for MHA, whose ranks
// hold different heads, and rank 0 alone for MLA, whose KV is the same on
// every rank.
func (pl *servingPlan) writers() int {
	if pl.mla {
		return 1
	}
	return pl.ranks
}

// requests is the number of requests the plan holds: users x turns.
func (pl *servingPlan) requests() int { return pl.o.users * pl.o.turns }

// describe says what the plan is, for the report header.
func (pl *servingPlan) describe() string {
	ranks := "1 rank"
	if pl.ranks > 1 {
		ranks = fmt.Sprintf("TP %d: %d stores in one directory", pl.ranks, pl.ranks)
		if pl.mla {
			ranks += ", rank 0 writes, every rank reads"
		} else {
			ranks += ", each rank writes its own files"
		}
	}
	capNote := fmt.Sprintf("%.2g of it", pl.o.capFraction)
	if pl.o.capBytes > 0 {
		capNote = "-serving-capacity=" + pl.o.capArg
	}
	return fmt.Sprintf("%d users x %d turns, %d clients in a closed loop; %s\n"+
		"system prompt %d tokens, each question and answer %d–%d tokens (%d-token pages); longest prompt %d pages\n"+
		"working set %d pages (%s) per writing store; MaxBytes %s (%s)",
		pl.o.users, pl.o.turns, pl.o.clients, ranks,
		pl.sysTokens, pl.minTurn, pl.maxTurn, pl.ps, pl.maxPages,
		pl.distinct, formatBytes(pl.workingSet()), formatBytes(pl.capacity), capNote)
}

// stampBlock is the unit of a page stamp: each block of a page buffer is
// its key's pattern with the buffer and block number mixed into its first
// eight bytes, so a block read into the wrong place fails the check too.
const stampBlock = 4096

// stamper writes and checks page stamps. It is not safe for concurrent
// use: each goroutine keeps its own.
type stamper struct {
	block []byte // the current key's pattern
	head  uint64 // its first eight bytes
}

func newStamper() *stamper { return &stamper{block: make([]byte, stampBlock)} }

// use makes the pattern of key on rank: MLA ranks pass rank 0, since their
// pages are the same on every rank.
func (s *stamper) use(key string, rank int) {
	seed := sha256.Sum256(fmt.Appendf(nil, "%s/%d", key, rank))
	_, _ = rand.NewChaCha8(seed).Read(s.block)
	s.head = binary.LittleEndian.Uint64(s.block)
}

// blocks calls f with each stamp block of bufs, a page's buffers, with that
// block's expected bytes in s.block.
func (s *stamper) blocks(bufs [][]byte, f func(dst, want []byte) bool) bool {
	for j, b := range bufs {
		for k, off := 0, 0; off < len(b); k, off = k+1, off+stampBlock {
			n := min(stampBlock, len(b)-off)
			if n >= 8 {
				binary.LittleEndian.PutUint64(s.block, s.head^uint64(j)<<32^uint64(k))
			}
			if !f(b[off:off+n], s.block[:n]) {
				return false
			}
		}
	}
	return true
}

// stamp writes the current key's page into bufs.
func (s *stamper) stamp(bufs [][]byte) {
	s.blocks(bufs, func(dst, want []byte) bool { copy(dst, want); return true })
}

// check reports whether bufs hold exactly the current key's page.
func (s *stamper) check(bufs [][]byte) bool {
	return s.blocks(bufs, func(dst, want []byte) bool { return bytes.Equal(dst, want) })
}

// poison zeroes the first eight bytes of every stamp block of bufs, so that
// a read that reports a page but leaves its slots alone fails the check.
func poison(bufs [][]byte) {
	for _, b := range bufs {
		for off := 0; off < len(b); off += stampBlock {
			clear(b[off:min(off+8, len(b))])
		}
	}
}

// stampSelfTest shows that the check the Serving scenario relies on can
// fail: on buffers shaped like two halves of a page of pageBytes, a stamped
// page passes, and the same page under another key, poisoned, or with its
// last byte changed does not.
func stampSelfTest(pageBytes int) error {
	half := max(pageBytes/2, 1)
	bufs := [][]byte{make([]byte, half), make([]byte, half)}
	s := newStamper()
	s.use("a", 0)
	s.stamp(bufs)
	if !s.check(bufs) {
		return fmt.Errorf("perf: stamp self-test: a stamped page fails its check")
	}
	s.use("b", 0)
	if s.check(bufs) {
		return fmt.Errorf("perf: stamp self-test: a page passes as another key's")
	}
	s.use("a", 1)
	if s.check(bufs) {
		return fmt.Errorf("perf: stamp self-test: a page passes as another rank's")
	}
	s.use("a", 0)
	bufs[1][half-1] ^= 1
	if s.check(bufs) {
		return fmt.Errorf("perf: stamp self-test: a page with a changed last byte passes")
	}
	s.stamp(bufs)
	poison(bufs)
	if s.check(bufs) {
		return fmt.Errorf("perf: stamp self-test: a poisoned page passes")
	}
	return nil
}
