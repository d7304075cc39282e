package stream

import (
	"context"
	"testing"
	"time"
)

func TestWaitWakesOnAdvanceAndBump(t *testing.T) {
	n := New(5)
	done := make(chan error, 2)
	go func() { done <- n.Wait(context.Background(), 5, 0) }()
	n.Advance(4) // stale: must not wake anyone
	n.Advance(6)
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
	n.Advance(6)
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
