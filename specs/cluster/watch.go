package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hicache-go/hicache/pkg/hicachefile"
	"github.com/hicache-go/hicache/specs/internal/sgname"
)

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
		n.announce(r.ID, round, got)
		time.Sleep(pollEvery)
	}
	rep.Keys = append(v1, old...)
	return nil
}

// announce tells the suite which keys a watching round found: "ready"
// after the first round, whatever it found, then "hit" for each later round
// that found some.
func (n *node) announce(id, round int, got []string) {
	switch {
	case round == 0:
		n.event(id, "ready", got)
	case len(got) > 0:
		n.event(id, "hit", got)
	}
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
	v1dir := sgname.V1Dir(n.config(r.Store))
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
		n.announce(r.ID, round, got)
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
