//go:build linux

package hicachefile

import (
	"errors"
	"strings"
	"testing"
)

// TestBadInputsNeverPanic: invalid keys and host indices give errors or false
// entries, never a panic.
func TestBadInputsNeverPanic(t *testing.T) {
	ps := mhaCfg.PageSize
	p, idx := randomPages(t, 4)
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m"}, p)
	long := strings.Repeat("a", 300)
	bad := []string{"", ".", "..", "a/b", "a\x00b", long, "/", strings.Repeat("b", 255)}
	for _, k := range bad {
		if err := s.Set(k, make([]byte, 8)); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Set(%q) = %v", k, err)
		}
		if err := s.Get(k, make([]byte, 8)); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Get(%q) = %v", k, err)
		}
		if s.Exists(k) {
			t.Errorf("Exists(%q)", k)
		}
		if ok, err := s.BatchSetV1([]string{k}, idx[:ps]); ok[0] {
			t.Errorf("BatchSetV1(%q) = %v, %v", k, ok, err)
		}
		if ok, err := s.BatchGetV1([]string{k}, idx[:ps]); ok[0] {
			t.Errorf("BatchGetV1(%q) = %v, %v", k, ok, err)
		}
		if ok, err := s.BatchSet([]string{k}, [][]byte{make([]byte, 8)}); ok[0] || err == nil {
			t.Errorf("BatchSet(%q) = %v, %v", k, ok, err)
		}
		if ok, err := s.BatchGet([]string{k}, [][]byte{make([]byte, 8)}); ok[0] {
			t.Errorf("BatchGet(%q) = %v, %v", k, ok, err)
		}
		s.Locate(k)
	}
	n := int64(mhaCfg.Pages * ps)
	for name, hi := range map[string][]int64{
		"short":     idx[:ps-1],
		"long":      idx[:ps+1],
		"unaligned": {1, 2, 3, 4},
		"negative":  {-4, -3, -2, -1},
		"past end":  {n, n + 1, n + 2, n + 3},
		"huge":      {1 << 62, 1<<62 + 1, 1<<62 + 2, 1<<62 + 3},
		"nil":       nil,
	} {
		if ok, err := s.BatchSetV1([]string{"x"}, hi); err == nil || ok[0] {
			t.Errorf("BatchSetV1 with %s indices = %v, %v", name, ok, err)
		}
		if ok, err := s.BatchGetV1([]string{"x"}, hi); err == nil || ok[0] {
			t.Errorf("BatchGetV1 with %s indices = %v, %v", name, ok, err)
		}
	}
	// Duplicate keys in one batch, and empty batches.
	if ok, err := s.BatchSetV1([]string{"d", "d"}, idx[:2*ps]); err != nil || !all(ok) {
		t.Errorf("BatchSetV1(d, d) = %v, %v", ok, err)
	}
	if ok, err := s.BatchGetV1([]string{"d", "d"}, idx[2*ps:4*ps]); err != nil || !all(ok) {
		t.Errorf("BatchGetV1(d, d) = %v, %v", ok, err)
	}
	if ok, err := s.BatchGetV1([]string{"d", "d"}, append(append([]int64{}, idx[2*ps:3*ps]...), idx[2*ps:3*ps]...)); !errors.Is(err, ErrLength) || ok[0] {
		t.Errorf("BatchGetV1(d, d) into one page = %v, %v", ok, err)
	}
	for _, f := range []func() error{
		func() error { _, err := s.BatchSetV1(nil, nil); return err },
		func() error { _, err := s.BatchGetV1(nil, nil); return err },
		func() error { _, err := s.BatchSet(nil, nil); return err },
		func() error { _, err := s.BatchGet(nil, nil); return err },
	} {
		if err := f(); err != nil {
			t.Errorf("empty batch = %v", err)
		}
	}
	if s.BatchExists(nil) != 0 {
		t.Errorf("BatchExists(nil) != 0")
	}
	if _, err := s.BatchSet([]string{"a"}, nil); !errors.Is(err, ErrLength) {
		t.Errorf("BatchSet length mismatch = %v", err)
	}
	if err := s.Get("d", nil); err == nil {
		t.Errorf("Get(d, nil) = nil")
	}
}

// TestCallsAfterCloseAreErrClosed: every call after Close is ErrClosed or reports
// nothing stored, without a panic, and Close twice is ErrClosed.
func TestCallsAfterCloseAreErrClosed(t *testing.T) {
	ps := mhaCfg.PageSize
	p, idx := randomPages(t, 1)
	s, err := New(Config{Dir: t.TempDir(), ModelName: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterMemPoolHost(p); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.BatchSetV1([]string{"k"}, idx[:ps]); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	page := make([]byte, p.PageBytes())
	for name, err := range map[string]error{
		"Set":        s.Set("k", page),
		"Get":        s.Get("k", page),
		"Clear":      s.Clear(),
		"Close":      s.Close(),
		"Register":   s.RegisterMemPoolHost(p),
		"BatchSet":   func() error { _, err := s.BatchSet([]string{"k"}, [][]byte{page}); return err }(),
		"BatchGet":   func() error { _, err := s.BatchGet([]string{"k"}, [][]byte{page}); return err }(),
		"BatchSetV1": func() error { _, err := s.BatchSetV1([]string{"k"}, idx[:ps]); return err }(),
		"BatchGetV1": func() error { _, err := s.BatchGetV1([]string{"k"}, idx[:ps]); return err }(),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	if s.Exists("k") || s.BatchExists([]string{"k"}) != 0 {
		t.Errorf("Exists after Close")
	}
	if _, ok := s.Locate("k"); ok {
		t.Errorf("Locate after Close")
	}
	_ = s.Stats()
}

// TestRegisterAfterCloseIsErrClosed: RegisterMemPoolHost on a closed store is
// ErrClosed, like every other call.
func TestRegisterAfterCloseIsErrClosed(t *testing.T) {
	p := newPool(t, mhaCfg)
	s, err := New(Config{Dir: t.TempDir(), ModelName: "m"})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if err := s.RegisterMemPoolHost(p); !errors.Is(err, ErrClosed) {
		t.Fatalf("RegisterMemPoolHost after Close = %v, want ErrClosed", err)
	}
}
