package lru

import (
	"testing"
	"time"
)

// TestUseDatedAheadClampedToNow: a file entering with a use after now (a
// modification time dated ahead) counts as used now, and finding it again
// with that time does not make it more recent: files used later go after
// it.
func TestUseDatedAheadClampedToNow(t *testing.T) {
	var l LRU
	l.Init()
	ahead := time.Now().AddDate(1, 0, 0).UnixNano()
	l.Track(ID{Name: "ahead"}, 10, ahead)
	l.Track(ID{Name: "recent"}, 10, time.Now().UnixNano())
	l.Track(ID{Name: "ahead"}, 10, ahead) // found again by a listing
	if out := l.Victims(10, nil); len(out) != 1 || out[0].ID.Name != "ahead" {
		t.Fatalf("victim = %+v, want the file dated ahead", out)
	}
}

// TestVictimsLeastRecentFirst tracks files used at different times: victims
// come least recently used first, spare the protected ones, and stop once
// the total fits.
func TestVictimsLeastRecentFirst(t *testing.T) {
	var l LRU
	l.Init()
	for i, name := range []string{"a", "b", "c", "d"} {
		l.Track(ID{Name: name}, 10, int64(100-i)) // d is the least recent
	}
	if got := l.Used(); got != 40 {
		t.Fatalf("Used = %d, want 40", got)
	}
	out := l.Victims(20, map[ID]bool{{Name: "c"}: true})
	if len(out) != 2 || out[0].ID.Name != "d" || out[1].ID.Name != "b" {
		t.Fatalf("victims = %+v, want d then b (c protected)", out)
	}
	if got := l.Used(); got != 20 {
		t.Errorf("Used after = %d, want 20", got)
	}
	l.Touch(ID{Name: "a"})
	if out := l.Victims(10, nil); len(out) != 1 || out[0].ID.Name != "c" {
		t.Errorf("after touching a, victim = %+v, want c", out)
	}
}

// TestZeroTracksNothing: an LRU that was never Init'ed counts nothing.
func TestZeroTracksNothing(t *testing.T) {
	var l LRU
	l.Track(ID{Name: "a"}, 10, 1)
	l.StartTemp("t", 5)
	if l.On() || l.Used() != 0 {
		t.Errorf("zero LRU: On %v, Used %d", l.On(), l.Used())
	}
}

// TestStuckAndTempsCount: a file that could not be removed and a temp file
// being written both count against the bound until forgotten or ended.
func TestStuckAndTempsCount(t *testing.T) {
	var l LRU
	l.Init()
	l.Track(ID{Name: "a"}, 10, 1)
	v := l.Victims(0, nil)
	l.MarkStuck(v[0])
	l.StartTemp("t", 7)
	if got := l.Used(); got != 17 {
		t.Fatalf("Used = %d, want 17", got)
	}
	l.Forget(ID{Name: "a"})
	l.EndTemp("t")
	if got := l.Used(); got != 0 {
		t.Errorf("Used = %d, want 0", got)
	}
}
