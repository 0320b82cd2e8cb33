//go:build linux

package hicachefile

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// followDirRig is a store on a Dir that the tests move, remove or swap,
// with 8 keys written through both interfaces before.
type followDirRig struct {
	s    *Store
	cfg  Config
	idx  []int64 // 8 pages of random bytes
	dst  []int64 // 8 pages to read into
	keys []string
	page []byte // the old-format page of every key
}

func newFollowDirRig(t *testing.T, dir string, noWatch bool) *followDirRig {
	t.Helper()
	p := newPool(t, mhaCfg)
	idx, err := p.Alloc(8 * mhaCfg.PageSize)
	if err != nil {
		t.Fatal(err)
	}
	fillRandom(t, p, idx)
	dst, err := p.Alloc(8 * mhaCfg.PageSize)
	if err != nil {
		t.Fatal(err)
	}
	r := &followDirRig{cfg: Config{Dir: dir, ModelName: "m", NoWatch: noWatch}, idx: idx, dst: dst, page: bytes.Repeat([]byte{7}, p.PageBytes())}
	r.s = newStore(t, r.cfg, p)
	for i := range 8 {
		r.keys = append(r.keys, fmt.Sprintf("key%d", i))
	}
	if ok, err := r.s.BatchSetV1(r.keys, idx); err != nil || !all(ok) {
		t.Fatal(ok, err)
	}
	if _, err := r.s.BatchSet(r.keys, [][]byte{r.page, r.page, r.page, r.page, r.page, r.page, r.page, r.page}); err != nil {
		t.Fatal(err)
	}
	// Reads that all hit, as a serving store's do.
	for range 3 {
		if ok, err := r.s.BatchGetV1(r.keys, dst); err != nil || !all(ok) {
			t.Fatal(ok, err)
		}
	}
	return r
}

// expectGone fails unless the store now serves and reports none of the
// rig's keys, through either interface, after one call of op.
func (r *followDirRig) expectGone(t *testing.T, first string) {
	t.Helper()
	ops := map[string]func(){
		"BatchGetV1": func() {
			if ok, err := r.s.BatchGetV1(r.keys, r.dst); err != nil || countTrue(ok) != 0 {
				t.Errorf("BatchGetV1 after the move = %v, %v; want no page", ok, err)
			}
		},
		"BatchExists": func() {
			if n := r.s.BatchExists(r.keys); n != 0 {
				t.Errorf("BatchExists after the move = %d; want 0", n)
			}
		},
		"Get": func() {
			if err := r.s.Get(r.keys[0], make([]byte, len(r.page))); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get after the move = %v; want ErrNotFound", err)
			}
		},
		"Exists": func() {
			if r.s.Exists(r.keys[1]) {
				t.Errorf("Exists after the move = true")
			}
		},
	}
	ops[first]()
	for _, op := range []string{"BatchGetV1", "BatchExists", "Get", "Exists"} {
		ops[op]()
	}
}

// expectAtPath fails unless a write of the store, and its Clear, act on the
// directory now at the path Dir, and leave the one at old alone.
func (r *followDirRig) expectAtPath(t *testing.T, old string) {
	t.Helper()
	if ok, err := r.s.BatchSetV1(r.keys[:2], r.idx[:2*mhaCfg.PageSize]); err != nil || !all(ok) {
		t.Fatalf("BatchSetV1 = %v, %v", ok, err)
	}
	v1 := filepath.Base(r.s.v1Dir)
	files, _ := filepath.Glob(filepath.Join(r.cfg.Dir, v1, "*"+batchExt))
	if len(files) == 0 {
		t.Errorf("BatchSetV1 after the move wrote nothing at the path Dir")
	}
	if ok, err := r.s.BatchGetV1(r.keys[:2], r.dst[:2*mhaCfg.PageSize]); err != nil || !all(ok) {
		t.Errorf("BatchGetV1 of the pages just written = %v, %v", ok, err)
	}
	before, _ := filepath.Glob(filepath.Join(old, v1, "*"+batchExt))
	if err := r.s.Clear(); err != nil {
		t.Fatal(err)
	}
	if files, _ := filepath.Glob(filepath.Join(r.cfg.Dir, v1, "*"+batchExt)); len(files) != 0 {
		t.Errorf("Clear left %v at the path Dir", files)
	}
	if after, _ := filepath.Glob(filepath.Join(old, v1, "*"+batchExt)); len(after) != len(before) || len(before) == 0 {
		t.Errorf("the directory moved away held %d batch files before Clear, %d after; want the same, not 0", len(before), len(after))
	}
}

// TestReadsFollowMovedDir: after mv Dir Dir.old && mkdir Dir, a store whose
// reads all hit stops serving and reporting the pages of the directory
// moved away at its next call, whichever call comes first, with inotify and
// without; its writes and Clear then act at the path.
func TestReadsFollowMovedDir(t *testing.T) {
	for _, noWatch := range []bool{false, true} {
		for _, first := range []string{"BatchGetV1", "BatchExists", "Get", "Exists"} {
			t.Run(fmt.Sprintf("NoWatch=%v/%s", noWatch, first), func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), "cache")
				r := newFollowDirRig(t, dir, noWatch)
				if err := os.Rename(dir, dir+".old"); err != nil {
					t.Fatal(err)
				}
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				r.expectGone(t, first)
				r.expectAtPath(t, dir+".old")
			})
		}
	}
}

// TestReadsFollowRemovedDir: after rm -rf Dir, the store serves nothing
// from the directory it held open.
func TestReadsFollowRemovedDir(t *testing.T) {
	for _, noWatch := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoWatch=%v", noWatch), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "cache")
			r := newFollowDirRig(t, dir, noWatch)
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			r.expectGone(t, "BatchGetV1")
		})
	}
}

// TestReadsServeThePathsPages: after the move, pages another store writes
// at the path are the ones served, and after that store's Clear none is.
func TestReadsServeThePathsPages(t *testing.T) {
	for _, noWatch := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoWatch=%v", noWatch), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "cache")
			r := newFollowDirRig(t, dir, noWatch)
			if err := os.Rename(dir, dir+".old"); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			p := newPool(t, mhaCfg)
			src, _ := p.Alloc(8 * mhaCfg.PageSize)
			fillRandom(t, p, src)
			w := newStore(t, Config{Dir: dir, ModelName: "m"}, p)
			if ok, err := w.BatchSetV1(r.keys, src); err != nil || !all(ok) {
				t.Fatal(ok, err)
			}
			ok, err := r.s.BatchGetV1(r.keys, r.dst)
			if err != nil {
				t.Fatal(err)
			}
			pool := r.s.pool.Load().pool
			for i, hit := range ok {
				if !hit {
					continue // not yet seen: a miss, never the old page
				}
				got, _ := pool.GetDataPage(r.dst[i*mhaCfg.PageSize])
				want, _ := p.GetDataPage(src[i*mhaCfg.PageSize])
				if !bytes.Equal(got, want) {
					t.Errorf("key %s: served a page that is not the one at the path Dir", r.keys[i])
				}
			}
			if err := w.Clear(); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if ok, err := r.s.BatchGetV1(r.keys, r.dst); err != nil || countTrue(ok) != 0 {
					t.Fatalf("BatchGetV1 after the path's Clear = %v, %v; want no page", ok, err)
				}
			}
			if n := r.s.BatchExists(r.keys); n != 0 {
				t.Errorf("BatchExists after the path's Clear = %d", n)
			}
		})
	}
}

// TestReadsFollowSwappedSymlinkDir: a Dir that is a symlink retargeted
// (a new link renamed over it, the link removed and made again, or ln(1)
// -sfn itself) is followed at the next call, with inotify and without: reads
// stop serving the old target's pages, and writes and Clear act on the new
// target.
func TestReadsFollowSwappedSymlinkDir(t *testing.T) {
	swaps := map[string]func(target, link string) error{
		"rename": func(target, link string) error {
			if err := os.Symlink(target, link+".new"); err != nil {
				return err
			}
			return os.Rename(link+".new", link)
		},
		"recreate": func(target, link string) error {
			if err := os.Remove(link); err != nil {
				return err
			}
			return os.Symlink(target, link)
		},
		"ln -sfn": func(target, link string) error {
			if out, err := exec.Command("ln", "-sfn", target, link).CombinedOutput(); err != nil {
				return fmt.Errorf("ln -sfn: %v: %s", err, out)
			}
			return nil
		},
	}
	for _, noWatch := range []bool{false, true} {
		for _, how := range []string{"rename", "recreate", "ln -sfn"} {
			for _, first := range []string{"BatchGetV1", "BatchExists"} {
				t.Run(fmt.Sprintf("NoWatch=%v/%s/%s", noWatch, how, first), func(t *testing.T) {
					if _, err := exec.LookPath("ln"); err != nil && how == "ln -sfn" {
						t.Skip("no ln(1) here")
					}
					root := t.TempDir()
					a, b, link := filepath.Join(root, "a"), filepath.Join(root, "b"), filepath.Join(root, "cache")
					for _, d := range []string{a, b} {
						if err := os.Mkdir(d, 0o755); err != nil {
							t.Fatal(err)
						}
					}
					if err := os.Symlink(a, link); err != nil {
						t.Fatal(err)
					}
					r := newFollowDirRig(t, link, noWatch)
					if err := swaps[how](b, link); err != nil {
						t.Fatal(err)
					}
					r.expectGone(t, first)
					r.expectAtPath(t, a)
				})
			}
		}
	}
}

// TestWritesFollowSwappedSymlinkDir: with inotify, a write that comes first
// after the swap, and a Clear, go to the link's new target, not the old.
func TestWritesFollowSwappedSymlinkDir(t *testing.T) {
	for _, noWatch := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoWatch=%v", noWatch), func(t *testing.T) {
			root := t.TempDir()
			a, b, link := filepath.Join(root, "a"), filepath.Join(root, "b"), filepath.Join(root, "cache")
			for _, d := range []string{a, b} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Symlink(a, link); err != nil {
				t.Fatal(err)
			}
			r := newFollowDirRig(t, link, noWatch)
			if err := os.Symlink(b, link+".new"); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(link+".new", link); err != nil {
				t.Fatal(err)
			}
			r.expectAtPath(t, a)
			r.expectGone(t, "BatchExists")
		})
	}
}
