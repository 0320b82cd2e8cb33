package dirwatch

import (
	"os"
	"path/filepath"
	"testing"
)

// TestDrainReportsWhatHappened watches a V1 directory and its Dir: a file
// renamed in, one written in place, one removed, and the V1 directory
// moved away are each reported as such.
func TestDrainReportsWhatHappened(t *testing.T) {
	top := t.TempDir()
	dir := filepath.Join(top, "v1")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := New(dir, top)
	if err != nil {
		t.Skipf("no inotify here: %v", err)
	}
	defer w.Close()
	tmp := filepath.Join(top, "tmp")
	if err := os.WriteFile(tmp, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "in")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "in"), []byte("yy"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "in")); err != nil {
		t.Fatal(err)
	}
	got := map[Event]int{}
	overflow, lost := w.Drain(func(name string, ev Event) {
		if ev != Dirs && name != "in" {
			t.Errorf("event %v for %q", ev, name)
		}
		got[ev]++
	})
	if overflow || lost {
		t.Fatalf("overflow %v, lost %v", overflow, lost)
	}
	for _, ev := range []Event{Appeared, Written, Gone} {
		if got[ev] == 0 {
			t.Errorf("no event %v among %v", ev, got)
		}
	}
	if err := os.Rename(dir, dir+".old"); err != nil {
		t.Fatal(err)
	}
	got = map[Event]int{}
	w.Drain(func(_ string, ev Event) { got[ev]++ })
	if got[Dirs] == 0 {
		t.Errorf("moving the V1 directory away raised no Dirs event: %v", got)
	}
}
