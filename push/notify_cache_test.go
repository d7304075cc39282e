package push

import (
	"testing"

	"github.com/hearth-chat/hearth/internal/room"
)

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

// TestCountsMem: the counts a /sync of a span without receipts takes from
// memory follow the evaluator's stores (a store advances what was
// counted; without it the second message is not known and CountsMem says
// so), and are not given for a span that starts after what was
// remembered: a receipt there would not be seen (given, they say 3 where
// the user has read two of the three).
func TestCountsMem(t *testing.T) {
	e, s, carol, bob, roomID := startedInRoom(t, true) // carol: the room's owner, who reads
	ctx := t.Context()
	mem := func(since uint64) (int, bool) {
		t.Helper()
		now, _ := e.rooms.Pos()
		live, err := s.Live(ctx, carol, now)
		if err != nil {
			t.Fatal(err)
		}
		c, ok := s.CountsMem(carol, roomID, since, now, live)
		return c.All.Notifications, ok
	}

	e.say(t, bob, roomID, "1", text("one"))
	e.settle(t, s)
	pos1, _ := e.rooms.Pos()
	live, err := s.Live(ctx, carol, pos1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Counts(carol, roomID, live); err != nil {
		t.Fatal(err)
	}
	if n, ok := mem(pos1); !ok || n != 1 {
		t.Fatalf("after a read at %d: %d, %v; want 1 from memory", pos1, n, ok)
	}
	two := e.say(t, bob, roomID, "2", text("two"))
	e.settle(t, s)
	if n, ok := mem(pos1); !ok || n != 2 {
		t.Fatalf("after a store: %d, %v; want 2 from memory", n, ok)
	}
	// The receipt and a third message, stored in one batch (as the
	// follower stores what lands within one wait): the cache entry is
	// advanced past the receipt with the receipts it was read with.
	s.Stop()
	from, _ := e.rooms.Pos()
	if _, err := e.rooms.SetReceipt(ctx, carol, roomID, "m.read", two, ""); err != nil {
		t.Fatal(err)
	}
	since, _ := e.rooms.Pos()
	e.say(t, bob, roomID, "3", text("three"))
	now, _ := e.rooms.Pos()
	s.counts.advance([]evaluated{{pe: &room.PushEvent{Pos: now, RoomID: roomID, ThreadRoot: "main"},
		results: []Result{{UserID: carol, Notify: true}}}}, from, now)
	s.doneMu.Lock()
	s.donePos = now
	s.doneMu.Unlock()
	if n, ok := mem(since); ok {
		t.Fatalf("a span after a receipt not remembered: %d from memory", n)
	}
}
