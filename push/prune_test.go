package push

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"
)

// testClock is a clock a test moves while the service's goroutines read it.
type testClock struct{ ns atomic.Int64 }

func newTestClock(s *Service) *testClock {
	c := &testClock{}
	c.ns.Store(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	s.now = func() time.Time { return time.Unix(0, c.ns.Load()) }
	return c
}

func (c *testClock) add(d time.Duration) { c.ns.Add(int64(d)) }

// Pruning deletes a user's read notifications once they are older than
// pruneAfter, threaded ones by their thread's receipt, and nothing else:
// not unread ones however old (the counts stay), not read ones younger
// than that (GET /notifications lists a month), not another member's.
func TestPruneDeletesOnlyOldReadNotifications(t *testing.T) {
	e := openEnv(t, t.TempDir())
	defer e.db.Close()
	owner, bob, carol := user("owner"), user("bob"), user("carol")
	s := New(e.db, e.rooms, Options{})
	clock := newTestClock(s)
	s.prunedAt.Store(math.MaxInt64) // no prune after a store: this test calls pruneLog itself
	s.Start()
	defer s.Stop()
	roomID := e.publicRoom(t, owner, []string{bob, carol})
	e.settle(t, s) // the follower has its start position: it evaluates every message below
	ctx := context.Background()

	m1 := e.say(t, bob, roomID, "1", text("plain"))
	m2 := e.say(t, bob, roomID, "2", map[string]any{"msgtype": "m.text", "body": "hey",
		"m.mentions": map[string]any{"user_ids": []string{owner}}}) // a highlight for the owner
	e.say(t, bob, roomID, "3", text("unread by anyone"))
	reply := e.say(t, bob, roomID, "4", map[string]any{"msgtype": "m.text", "body": "in a thread",
		"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": m1}})
	e.settle(t, s)
	// The owner reads the main timeline up to m2, and the thread.
	if _, err := e.rooms.SetReceipt(ctx, owner, roomID, "m.read", m2, "main"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rooms.SetReceipt(ctx, owner, roomID, "m.read", reply, m1); err != nil {
		t.Fatal(err)
	}
	listed := func(u string) int {
		t.Helper()
		ns, _, err := s.Notifications(u, 0, 100, false)
		if err != nil {
			t.Fatal(err)
		}
		return len(ns)
	}
	counts := func(u string) Count {
		t.Helper()
		c, err := s.Counts(u, roomID, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c.All
	}
	if n := listed(owner); n != 4 {
		t.Fatalf("owner's notifications before: %d, want 4", n)
	}
	ownerCounts, carolCounts := counts(owner), counts(carol)
	if ownerCounts.Notifications != 1 || carolCounts.Notifications != 4 {
		t.Fatalf("counts before: owner %+v, carol %+v; want 1 and 4", ownerCounts, carolCounts)
	}

	clock.add(pruneAfter - time.Minute) // read, but not old enough
	if n, err := s.pruneLog(ctx); err != nil || n != 0 {
		t.Fatalf("prune within %v: %d deleted, %v; want none", pruneAfter, n, err)
	}
	clock.add(2 * time.Minute)
	if n, err := s.pruneLog(ctx); err != nil || n != 3 {
		t.Fatalf("prune past %v: %d deleted, %v; want the owner's 3 read ones", pruneAfter, n, err)
	}
	if n := listed(owner); n != 1 {
		t.Fatalf("owner's notifications after: %d, want the unread one", n)
	}
	if n := listed(carol); n != 4 {
		t.Fatalf("carol's notifications after: %d, want all 4 (she read none)", n)
	}
	if c := counts(owner); c != ownerCounts {
		t.Fatalf("owner's counts moved: %+v, was %+v", c, ownerCounts)
	}
	if c := counts(carol); c != carolCounts {
		t.Fatalf("carol's counts moved: %+v, was %+v", c, carolCounts)
	}

	// Reading on, the owner reads the old unread one and a new one, stored
	// now: the old one goes, the new one stays a month.
	m5 := e.say(t, bob, roomID, "5", text("new"))
	e.settle(t, s)
	if _, err := e.rooms.SetReceipt(ctx, owner, roomID, "m.read", m5, ""); err != nil {
		t.Fatal(err)
	}
	if n, err := s.pruneLog(ctx); err != nil || n != 1 {
		t.Fatalf("prune after reading on: %d deleted, %v; want the old one", n, err)
	}
	if n := listed(owner); n != 1 {
		t.Fatalf("owner's notifications at the end: %d, want the fresh one", n)
	}
}

// The prune runs after a store at most once per pruneEvery, and goes on
// over as many write transactions as the log needs (pruneBatch records
// scanned in each).
func TestPruneAfterStoreOncePerPeriod(t *testing.T) {
	e := openEnv(t, t.TempDir())
	defer e.db.Close()
	owner, bob := user("owner"), user("bob")
	s := New(e.db, e.rooms, Options{})
	clock := newTestClock(s)
	defer func(n int) { pruneBatch = n }(pruneBatch)
	pruneBatch = 10
	roomID := e.publicRoom(t, owner, []string{bob, user("carol")})
	s.Start()
	e.settle(t, s) // the follower has its start position: it evaluates every message below
	var last string
	for i := range 3*pruneBatch + 5 {
		last = e.say(t, bob, roomID, fmt.Sprint(i), text("x"))
	}
	e.settle(t, s)
	s.storeEvaluated()
	s.Stop() // no store of its own from here: the test calls maybePrune as a store would
	if _, err := e.rooms.SetReceipt(context.Background(), owner, roomID, "m.read", last, ""); err != nil {
		t.Fatal(err)
	}
	listed := func() int {
		ns, _, err := s.Notifications(owner, 0, 100, false)
		if err != nil {
			t.Fatal(err)
		}
		return len(ns)
	}
	if n := listed(); n != 3*pruneBatch+5 {
		t.Fatalf("notifications: %d, want %d", n, 3*pruneBatch+5)
	}
	clock.add(pruneAfter + time.Hour)
	s.maybePrune(context.Background()) // the store that follows a quiet hour
	if n := listed(); n != 0 {
		t.Fatalf("after the prune: %d notifications, want none", n)
	}
	at := s.prunedAt.Load()
	clock.add(pruneEvery / 2)
	s.maybePrune(context.Background())
	if s.prunedAt.Load() != at {
		t.Fatal("pruned again within pruneEvery")
	}
	clock.add(pruneEvery)
	s.maybePrune(context.Background())
	if s.prunedAt.Load() == at {
		t.Fatal("not pruned again after pruneEvery")
	}
}
