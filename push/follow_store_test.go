package push

import (
	"context"
	"fmt"
	"testing"
)

// TestHeldResultsStoredOnceAcrossRestart: the follower holds evaluated
// results in memory for a larger commit while events keep coming
// (storeDelay). GET /notifications still lists every event as soon as it
// is evaluated (Notifications has them stored first), and a follower
// stopped with results held (as by a crash: nothing of them is stored
// that the position does not cover) resumes from its stored position
// after a restart: each event is then in the log exactly once.
func TestHeldResultsStoredOnceAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	e := openEnv(t, dir)
	owner, bob := user("owner"), user("bob")
	roomID := e.publicRoom(t, owner, []string{bob})
	s := New(e.db, e.rooms, Options{})
	s.Start()
	e.settle(t, s) // the follower has recorded where it starts
	const n = 20
	for i := range n / 2 {
		e.say(t, bob, roomID, fmt.Sprint(i), text(fmt.Sprintf("first %d", i)))
	}
	pos, _ := e.rooms.Pos()
	s.waitInMemory(context.Background(), pos)
	list, _, err := s.Notifications(owner, 0, 100, false)
	if err != nil || len(list) != n/2 {
		t.Fatalf("notifications once evaluated: %d (err %v), want %d", len(list), err, n/2)
	}
	for i := n / 2; i < n; i++ {
		e.say(t, bob, roomID, fmt.Sprint(i), text(fmt.Sprintf("then %d", i)))
	}
	pos, _ = e.rooms.Pos()
	s.waitInMemory(context.Background(), pos)
	s.Stop() // held results, if any, are dropped here
	e.db.Close()

	e = openEnv(t, dir)
	defer e.db.Close()
	s = New(e.db, e.rooms, Options{})
	s.Start()
	defer s.Stop()
	e.settle(t, s)
	list, _, err = s.Notifications(owner, 0, 100, false)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]int{}
	for _, nt := range list {
		seen[nt.Pos]++
	}
	if len(list) != n || len(seen) != n {
		t.Fatalf("after the restart: %d notifications at %d positions, want %d once each", len(list), len(seen), n)
	}
}
