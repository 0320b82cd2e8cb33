// Package hicache_test is the one root Ginkgo suite. Spec packages under
// specs/ register their specs at init and are pulled in by blank imports, so
// that `go tool ginkgo -r` runs every spec exactly once.
package hicache_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	_ "github.com/hicache-go/hicache/specs/hicachefile"
	_ "github.com/hicache-go/hicache/specs/hostcache"
)

func TestHiCache(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "HiCache")
}
