//go:build linux

package hicachefile_test

import (
	"fmt"
	"log"
	"os"

	"github.com/hicache-go/hicache/pkg/hicachefile"
	"github.com/hicache-go/hicache/pkg/hostcache"
)

// The zero-copy interface: a host pool, a store on a directory with the pool
// registered, then two pages written straight from pool memory to one batch
// file with BatchSetV1 and read back into other slots with BatchGetV1.
func Example() {
	dir, err := os.MkdirTemp("", "hicache-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	pool, err := hostcache.New(hostcache.Config{
		Kind: hostcache.MHA, Layout: hostcache.PageFirst, DType: hostcache.BFloat16,
		PageSize: 64, Pages: 4, LayerNum: 2, HeadNum: 2, HeadDim: 8,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	store, err := hicachefile.New(hicachefile.Config{Dir: dir, ModelName: "meta-llama/Llama-3.1-8B-Instruct"})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	if err := store.RegisterMemPoolHost(pool); err != nil {
		log.Fatal(err)
	}

	// Two pages of KV to back up, and two free pages to prefetch into.
	src, err := pool.Alloc(2 * 64)
	if err != nil {
		log.Fatal(err)
	}
	dst, err := pool.Alloc(2 * 64)
	if err != nil {
		log.Fatal(err)
	}
	bufs, err := pool.PageBuffers(src)
	if err != nil {
		log.Fatal(err)
	}
	for i, b := range bufs {
		b[0] = byte(i + 1) // stand-in for the KV the model computed
	}

	// Keys are SGLang's: hex SHA-256 digests of the token prefix.
	keys := []string{
		"6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b",
		"d4735e3a265e16eee03f59718b9b5d03019c07d8b6c51f90da3a666eec13ab35",
	}
	stored, err := store.BatchSetV1(keys, src)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("stored:", stored)
	fmt.Println("stored prefix:", store.BatchExists(keys))

	loaded, err := store.BatchGetV1(keys, dst)
	if err != nil {
		log.Fatal(err)
	}
	got, err := pool.PageBuffers(dst)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("loaded:", loaded, "first bytes:", got[0][0], got[1][0], got[2][0], got[3][0])

	// Clear removes this store's files only (this model and rank).
	if err := store.Clear(); err != nil {
		log.Fatal(err)
	}
	fmt.Println("after Clear:", store.BatchExists(keys))
	// Output:
	// stored: [true true]
	// stored prefix: 2
	// loaded: [true true] first bytes: 1 2 3 4
	// after Clear: 0
}
