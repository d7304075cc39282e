package push

import "testing"

// TestCountsCacheUpToStoredPosition: CountsIn remembers it counted the
// log up to a Live's stored position and skips the log while the
// position stays; a later position is read again (a cache used whatever
// the limit gives 1, want 2), and the position of a service that is not
// running, which the log need not hold yet, is not remembered as counted
// (remembering it gives 2, want 3, once the evaluator has caught up).
func TestCountsCacheUpToStoredPosition(t *testing.T) {
	e := openEnv(t, t.TempDir())
	defer e.db.Close()
	owner, bob, carol := user("owner"), user("bob"), user("carol")
	s := New(e.db, e.rooms, Options{})
	s.Start()
	roomID := e.publicRoom(t, owner, []string{bob, carol})
	ctx := t.Context()
	counts := func(s *Service, pos uint64, want int) {
		t.Helper()
		live, err := s.Live(ctx, carol, pos)
		if err != nil {
			t.Fatal(err)
		}
		c, err := s.Counts(carol, roomID, live)
		if err != nil {
			t.Fatal(err)
		}
		if c.All.Notifications != want {
			t.Fatalf("counts at %d (evaluated %d): %d notifications, want %d", pos, live.Evaluated, c.All.Notifications, want)
		}
	}

	e.say(t, bob, roomID, "1", text("one"))
	e.settle(t, s)
	pos1, _ := e.rooms.Pos()
	counts(s, pos1, 1)
	counts(s, pos1, 1) // from the cache, no seek

	e.say(t, bob, roomID, "2", text("two"))
	e.settle(t, s)
	pos2, _ := e.rooms.Pos()
	counts(s, pos2, 2)
	s.Stop()

	// A service not yet running: Live's position is the caller's, and
	// the log does not hold the third message until it has run.
	late := New(e.db, e.rooms, Options{})
	e.say(t, bob, roomID, "3", text("three"))
	pos3, _ := e.rooms.Pos()
	counts(late, pos3, 2)
	late.Start()
	defer late.Stop()
	e.settle(t, late)
	counts(late, pos3, 3)
}
