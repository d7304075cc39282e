package push

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestEvaluationGoesOnWhileStoring: while the follower stores the results
// it held (a write and an fsync), a message committed meanwhile is still
// evaluated and published, so the long polls waiting for its count
// (Ready) are not held up by the store; the results being stored stay
// visible to /sync until their commit, those published during it stay
// visible after it, and both messages end up in the log exactly once. The
// store is held open here by a test gate; with the store on the
// follower's own path the second message is never published while the
// gate is closed.
func TestEvaluationGoesOnWhileStoring(t *testing.T) {
	// Only the follower publishes here: the early path (early.go) would
	// publish the second message whatever the follower does.
	e, s, owner, bob, roomID := startedInRoom(t, false)

	started, gate := make(chan struct{}, 4), make(chan struct{})
	hold := func() {
		started <- struct{}{}
		<-gate
	}
	storeGate.Store(&hold)
	defer storeGate.Store(nil)
	open := sync.OnceFunc(func() { close(gate) })
	defer open() // before Stop, which waits for the store
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	e.say(t, bob, roomID, "1", text("first"))
	first, _ := e.rooms.Pos()
	s.waitInMemory(ctx, first)
	s.askToStore()
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the follower never stored the first message's results")
	}

	e.say(t, bob, roomID, "2", text("second"))
	second, _ := e.rooms.Pos()
	s.waitInMemory(ctx, second)
	if !s.inMemory(second) {
		t.Fatal("the second message was not published while the first one's results were being stored")
	}
	if n := liveNotifications(t, s, owner, roomID, second); n != 2 {
		t.Fatalf("during the store: %d notifications counted, want 2", n)
	}

	// The first store commits; the next one (the second message's) is
	// held in turn. Between the two the second message's result is only
	// in memory, and still counted.
	gate <- struct{}{}
	s.askToStore()
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the follower never stored the second message's results")
	}
	if done := s.evaluated(); done < first || done >= second {
		t.Fatalf("stored up to %d while the second store is held, want [%d, %d)", done, first, second)
	}
	if n := liveNotifications(t, s, owner, roomID, second); n != 2 {
		t.Fatalf("after the first store: %d notifications counted, want 2", n)
	}
	storeGate.Store(nil)
	open()
	if err := s.WaitEvaluated(ctx, second); err != nil {
		t.Fatal(err)
	}
	list, _, err := s.Notifications(owner, 0, 100, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Pos == list[1].Pos {
		t.Fatalf("after the store: %d notifications, want the 2 messages once each", len(list))
	}
}
