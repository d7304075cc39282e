package stream

import (
	"context"
	"testing"
	"time"
)

func TestWaitWakesOnMoveAndBump(t *testing.T) {
	n := New(5)
	done := make(chan error, 2)
	go func() { done <- n.Wait(context.Background(), 5, 0) }()
	n.Move(4) // stale: must not wake anyone
	n.Wake()
	n.Move(6)
	n.Wake()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	go func() { done <- n.Wait(context.Background(), 6, 0) }()
	if e := n.Bump(); e != 1 {
		t.Fatalf("ephemeral %d, want 1", e)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if p, e := n.Pos(); p != 6 || e != 1 {
		t.Fatalf("pos %d/%d", p, e)
	}
}

// Move makes a new position visible without waking those already
// waiting; Wake wakes them, once per move (the store moves the position,
// hands on what long polls wait for, then wakes the followers).
func TestMoveWakesWaitersOnlyAtWake(t *testing.T) {
	n := New(5)
	done := make(chan error, 1)
	waiting := make(chan struct{})
	go func() {
		n.mu.Lock()
		ch := n.wake
		n.mu.Unlock()
		close(waiting)
		<-ch
		done <- nil
	}()
	<-waiting
	n.Move(6)
	if p, _ := n.Pos(); p != 6 {
		t.Fatalf("Pos %d after Move(6)", p)
	}
	if err := n.Wait(context.Background(), 5, 0); err != nil { // begun after the move: at once
		t.Fatal(err)
	}
	select {
	case <-done:
		t.Fatal("a waiter woke at Move")
	case <-time.After(20 * time.Millisecond):
	}
	n.Wake()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	ch := n.wake
	n.mu.Unlock()
	n.Wake() // nothing moved since: no wake-up
	select {
	case <-ch:
		t.Fatal("Wake woke waiters with nothing moved")
	default:
	}
}

func TestWaitReturnsAtOnceWhenBehind(t *testing.T) {
	n := New(9)
	if err := n.Wait(context.Background(), 3, 0); err != nil {
		t.Fatal(err)
	}
}

func TestWaitHonoursContext(t *testing.T) {
	n := New(1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := n.Wait(ctx, 1, 0); err == nil {
		t.Fatal("wait returned nil without an advance")
	}
}

// EphemeralWatch's channel closes on a typing bump and never on a commit:
// long polls waiting for the push evaluator rely on both halves.
func TestEphemeralWatchIgnoresCommits(t *testing.T) {
	n := New(5)
	e, ch := n.EphemeralWatch()
	if e != 0 {
		t.Fatalf("ephemeral %d, want 0", e)
	}
	n.Move(6)
	n.Wake()
	select {
	case <-ch:
		t.Fatal("a commit closed the ephemeral channel")
	default:
	}
	n.Bump()
	select {
	case <-ch:
	default:
		t.Fatal("a bump left the ephemeral channel open")
	}
	if e, _ := n.EphemeralWatch(); e != 1 {
		t.Fatalf("ephemeral %d, want 1", e)
	}
}
