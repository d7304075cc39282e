package push

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/internal/room"
)

// TestCountsPublishedAtCommit: a message sent through the room's
// sequencer has its count published by the time of its commit (evaluated
// while the commit ran), with the push follower held back: the long polls
// of the room wait on Ready, and no longer for the follower to be
// scheduled after the commit. The follower then takes those results and
// stores them once.
func TestCountsPublishedAtCommit(t *testing.T) {
	e, s, owner, bob, roomID := startedInRoom(t, true)

	gate := make(chan struct{})
	hold := func() { <-gate }
	evalGate.Store(&hold)
	defer evalGate.Store(nil)
	open := sync.OnceFunc(func() { close(gate) })
	defer open() // before Stop, which waits for the follower
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for i, body := range []string{"one", "two"} {
		e.say(t, bob, roomID, body, text(body))
		pos, _ := e.rooms.Pos()
		s.waitInMemory(ctx, pos)
		if !s.inMemory(pos) {
			t.Fatalf("message %d: not published while the follower was held", i+1)
		}
		if ready, _, _ := s.Ready(); ready < pos {
			t.Fatalf("message %d: Ready at %d, want %d", i+1, ready, pos)
		}
		if n := liveNotifications(t, s, owner, roomID, pos); n != i+1 {
			t.Fatalf("message %d: %d notifications counted, want %d", i+1, n, i+1)
		}
		if n := liveNotifications(t, s, bob, roomID, pos); n != 0 {
			t.Fatalf("message %d: the sender counts %d notifications of their own", i+1, n)
		}
	}

	evalGate.Store(nil)
	open()
	pos, _ := e.rooms.Pos()
	if err := s.WaitEvaluated(ctx, pos); err != nil {
		t.Fatal(err)
	}
	list, _, err := s.Notifications(owner, 0, 100, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Pos == list[1].Pos {
		t.Fatalf("stored: %d notifications, want the 2 messages once each", len(list))
	}
	s.doneMu.Lock()
	left := len(s.early)
	s.doneMu.Unlock()
	if left != 0 {
		t.Fatalf("%d early results left after the follower passed them", left)
	}
}

// TestEarlyResultsOnlyFollowOn: results of a batch are published early
// only when their positions follow on from what is published already,
// since Ready and /sync's counts take "published up to P" to cover every
// event up to P; a later publication of the follower's keeps those
// published early past its own position.
func TestEarlyResultsOnlyFollowOn(t *testing.T) {
	e := openEnv(t, t.TempDir())
	defer e.db.Close()
	s := New(e.db, e.rooms, Options{})
	s.running.Store(true) // the follower's bookkeeping, driven by hand
	defer s.running.Store(false)
	s.publish(nil, 10)
	at := func(pos uint64) evaluated {
		return evaluated{pe: &room.PushEvent{Pos: pos, RoomID: "!r:x"}, results: []Result{{UserID: "@a:x", Notify: true}}}
	}

	s.publishEarly([]evaluated{at(12)}) // 11 (another write's) is not published
	if pos, _, _ := s.Ready(); pos != 10 {
		t.Fatalf("Ready at %d after a batch past a gap, want 10", pos)
	}
	s.publishEarly([]evaluated{at(11), at(13)}) // not contiguous
	if pos, _, _ := s.Ready(); pos != 10 {
		t.Fatalf("Ready at %d after a batch with a gap, want 10", pos)
	}
	s.publishEarly([]evaluated{at(11), at(12)})
	if pos, _, _ := s.Ready(); pos != 12 {
		t.Fatalf("Ready at %d after a batch following on, want 12", pos)
	}
	live, err := s.Live(context.Background(), "@a:x", 12)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(live.Hits["!r:x"]); n != 2 {
		t.Fatalf("%d hits published early, want 2", n)
	}

	s.publish([]evaluated{at(11)}, 11) // the follower, behind
	live, err = s.Live(context.Background(), "@a:x", 12)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(live.Hits["!r:x"]); n != 2 {
		t.Fatalf("%d hits after the follower published up to 11, want 2", n)
	}
	if pos, _, _ := s.Ready(); pos != 12 {
		t.Fatalf("Ready went back to %d", pos)
	}
}

// startedInRoom opens a store in which owner and bob share a public room,
// and starts a push service, with or without the early path, that has
// caught up with it; both end with the test.
func startedInRoom(t *testing.T, early bool) (e *env, s *Service, owner, bob, roomID string) {
	t.Helper()
	e = openEnv(t, t.TempDir())
	t.Cleanup(func() { e.db.Close() })
	owner, bob = user("owner"), user("bob")
	roomID = e.publicRoom(t, owner, []string{bob})
	s = New(e.db, e.rooms, Options{})
	s.Start()
	t.Cleanup(s.Stop) // before the store closes (cleanups run last first)
	if !early {
		e.rooms.SetEarlyPush(nil)
	}
	e.settle(t, s)
	return e, s, owner, bob, roomID
}
