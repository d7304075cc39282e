package daemon

import "testing"

// TestStartIndexesStartupEvents: what a first start commits (the owner's
// account, the call agent's rooms) is in the search index when Start
// returns, so the index's flush timer does not write to the store in the
// first idle minute (before, it did so 250 ms after the events).
func TestStartIndexesStartupEvents(t *testing.T) {
	d, _ := startLoopbackDaemon(t)
	pos, _ := d.rooms.Pos()
	done, err := d.search.Indexed()
	if err != nil {
		t.Fatal(err)
	}
	if pos == 0 {
		t.Fatal("a first start committed no event: nothing to check")
	}
	if done < pos {
		t.Fatalf("search index at %d when Start returned, events committed up to %d", done, pos)
	}
}
