package room

import "testing"

// TestSharedMembersHolds: a user found joined holds for a span that starts
// at or before where it was found, and then up to the span's end; not for
// one that starts after it (a member event may lie between), nor for one
// that starts before the user joined.
func TestSharedMembersHolds(t *testing.T) {
	var m sharedMembers
	m.note("@u:x", 7, 5, 10) // joined since 5, seen at 10
	for _, c := range []struct {
		since, now uint64
		want       bool
	}{
		{4, 12, false},  // the span starts before the join
		{10, 12, true},  // from where it was seen; now known up to 12
		{12, 14, true},  // chained from the last span
		{15, 16, false}, // a gap: 14..15 was not seen
		{14, 16, true},
	} {
		if got := m.holds("@u:x", 7, c.since, c.now); got != c.want {
			t.Errorf("holds(%d, %d) = %v, want %v", c.since, c.now, got, c.want)
		}
	}
	if m.holds("@u:x", 8, 10, 12) || m.holds("@v:x", 7, 10, 12) {
		t.Error("holds for a room or user never seen")
	}
}
