package hostcache_test

import (
	"fmt"
	"log"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// A pool for a small MHA model in SGLang's page_first layout: allocate two
// pages, copy one out as a flat data page, and list the buffers a zero-copy
// storage backend reads and writes.
func ExampleNew() {
	pool, err := hostcache.New(hostcache.Config{
		Kind:     hostcache.MHA,
		Layout:   hostcache.PageFirst,
		DType:    hostcache.BFloat16,
		PageSize: 64, // tokens per page
		Pages:    4,
		LayerNum: 2,
		HeadNum:  2,
		HeadDim:  8,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	indices, err := pool.Alloc(2 * 64) // two pages: 64 slots each
	if err != nil {
		log.Fatal(err)
	}
	page, err := pool.GetDataPage(indices[0])
	if err != nil {
		log.Fatal(err)
	}
	_, sizes, err := pool.GetPageBufferMeta(indices)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("bytes per token:", pool.SizePerToken())
	fmt.Println("bytes per page:", pool.PageBytes(), len(page))
	fmt.Println("buffers (K, V per page):", sizes)
	fmt.Println("free slots:", pool.Available())
	// Output:
	// bytes per token: 128
	// bytes per page: 8192 8192
	// buffers (K, V per page): [4096 4096 4096 4096]
	// free slots: 128
}
