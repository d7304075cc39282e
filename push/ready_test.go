package push

import (
	"context"
	"testing"
	"time"
)

// TestReadyCoversPublishedResults: Ready is what a /sync long poll waits
// on instead of the commit (localapi/matrix awaitMove). Whenever it
// reports a position, the results of every event up to it are published
// or stored, so the response built there carries the event's count
// without evaluating it again; Stop wakes its waiters and says the
// evaluator is gone, so they fall back to the commit.
func TestReadyCoversPublishedResults(t *testing.T) {
	e := openEnv(t, t.TempDir())
	defer e.db.Close()
	owner, bob := user("owner"), user("bob")
	roomID := e.publicRoom(t, owner, []string{bob})
	s := New(e.db, e.rooms, Options{})
	if _, _, ok := s.Ready(); ok {
		t.Fatal("Ready says ok before Start")
	}
	s.Start()
	e.settle(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 5 {
		e.say(t, bob, roomID, string(rune('a'+i)), text("hello"))
		pos, _ := e.rooms.Pos()
		for {
			ready, changed, ok := s.Ready()
			if !ok {
				t.Fatal("Ready says not ok while running")
			}
			if ready >= pos {
				break
			}
			select {
			case <-changed:
			case <-ctx.Done():
				t.Fatalf("Ready never reached %d (at %d)", pos, ready)
			}
		}
		s.doneMu.Lock()
		covered := s.donePos >= pos || s.memPos >= pos
		s.doneMu.Unlock()
		if !covered {
			t.Fatalf("Ready reached %d before the results were published", pos)
		}
		if n := liveNotifications(t, s, owner, roomID, pos); n != i+1 {
			t.Fatalf("after message %d: %d notifications, want %d", i+1, n, i+1)
		}
	}

	_, changed, _ := s.Ready()
	s.Stop()
	select {
	case <-changed:
	case <-ctx.Done():
		t.Fatal("Stop left Ready's waiters asleep")
	}
	if _, _, ok := s.Ready(); ok {
		t.Fatal("Ready says ok after Stop")
	}
}

// Storing results that were published already moves nothing Ready
// reports, so it wakes no long poll (50 of them per room used to wake for
// nothing every time the follower stored); a position moving past the
// published one does.
func TestStoreOfPublishedWakesNoLongPoll(t *testing.T) {
	e := openEnv(t, t.TempDir())
	defer e.db.Close()
	s := New(e.db, e.rooms, Options{})
	s.running.Store(true) // the follower's bookkeeping, driven by hand
	defer s.running.Store(false)
	s.publish(nil, 10)
	pos, changed, _ := s.Ready()
	if pos != 10 {
		t.Fatalf("Ready at %d after publishing up to 10", pos)
	}
	s.processed(10) // the held results are stored
	select {
	case <-changed:
		t.Fatal("storing published results woke Ready's waiters")
	default:
	}
	s.processed(11) // a position with nothing to evaluate
	select {
	case <-changed:
	default:
		t.Fatal("a new position left Ready's waiters asleep")
	}
	if pos, _, _ := s.Ready(); pos != 11 {
		t.Fatalf("Ready at %d, want 11", pos)
	}
}

// TestReadyGoneWhenTheFollowerEnds: a follower that stops on an error it
// cannot get past (here: its first write fails) publishes nothing any
// more, so Ready must say so; long polls waiting on it would otherwise
// sleep through every commit until their timeout.
func TestReadyGoneWhenTheFollowerEnds(t *testing.T) {
	e := openEnv(t, t.TempDir())
	s := New(e.db, e.rooms, Options{})
	e.db.Close() // every write fails: the follower cannot record its start
	s.Start()
	defer s.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, changed, ok := s.Ready()
		if !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the follower ended, yet Ready still says it runs")
		}
		select {
		case <-changed:
		case <-time.After(10 * time.Millisecond):
		}
	}
}
