//go:build linux

package torture

import (
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"

	"github.com/hicache-go/hicache/pkg/hicachefile"
	"github.com/hicache-go/hicache/specs/internal/sgname"
)

// keyName returns the i-th key of a key space: most are 16 hex digits, as
// SGLang's hashes are; every eighth holds '_' ("req3_page_24"), as a caller
// of the store's own may choose, and as Clear must handle.
func keyName(i int) string {
	if i%8 == 7 {
		return fmt.Sprintf("req%d_page_%d", i/64, i)
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "key %d", i)
	return fmt.Sprintf("%016x", h.Sum64())
}

// keyNames returns the first n keys of the key space.
func keyNames(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = keyName(i)
	}
	return keys
}

// batchName returns a name a store of cfg takes for one of its batch files:
// "b", 16 hex digits, the suffix and ".batch.bin".
func batchName(cfg hicachefile.Config, n int) string {
	return fmt.Sprintf("b%016x%s.batch.bin", n, sgname.Suffix(cfg))
}

// leftovers lists what a store of cfg left in its directories besides its
// final files: old-format files of keys, the V1 directory (and any other
// store's), and batch files. What remains is temp files. It reads the
// directories without opening any file in them.
func leftovers(cfg hicachefile.Config, keys []string) ([]string, error) {
	suffix := sgname.Suffix(cfg)
	final := make(map[string]bool, len(keys))
	for _, k := range keys {
		final[k+suffix+".bin"] = true
	}
	var out []string
	ents, err := os.ReadDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if !final[e.Name()] && !(e.IsDir() && strings.HasPrefix(e.Name(), "v1-")) {
			out = append(out, e.Name())
		}
	}
	ents, err = os.ReadDir(sgname.V1Dir(cfg))
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	for _, e := range ents {
		n, ok := strings.CutSuffix(e.Name(), suffix+".batch.bin")
		if !ok || len(n) != 17 || n[0] != 'b' {
			out = append(out, filepath.Join(filepath.Base(sgname.V1Dir(cfg)), e.Name()))
		}
	}
	return out, nil
}

// storeArgs is the part of a hicachefile.Config a child is given: a Config
// itself does not encode as JSON (its Syscalls are functions).
type storeArgs struct {
	Dir, Model                  string
	TPRank, TPSize              int
	MaxBytes, MaxBatchFileBytes int64
}

// config returns the Config a describes.
func (a storeArgs) config() hicachefile.Config {
	return hicachefile.Config{Dir: a.Dir, ModelName: a.Model, TPRank: a.TPRank, TPSize: a.TPSize,
		MaxBytes: a.MaxBytes, MaxBatchFileBytes: a.MaxBatchFileBytes}
}
