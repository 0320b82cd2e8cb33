//go:build linux

package hicachefile

import (
	"testing"

	"github.com/hicache-go/hicache/internal/quiettest"
)

// TestMain keeps `go tool ginkgo -r` to one line for this package when its
// tests pass (see package quiettest).
func TestMain(m *testing.M) {
	quiettest.Main(m, "github.com/hicache-go/hicache/pkg/hicachefile")
}
