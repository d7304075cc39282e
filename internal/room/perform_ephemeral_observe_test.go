package room

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestTypingHandOffPerRoom: the hand-off of typing to the observer (the
// appservice queue, whose write is an fsync) in one room does not hold up
// typing in another room, and a change in a room while its hand-off runs
// returns at once; the room's last hand-off carries its current set.
func TestTypingHandOffPerRoom(t *testing.T) {
	ctx := context.Background()
	e, _ := newEngine(t)
	roomA, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	roomB, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ChangeMembership(ctx, MembershipRequest{Sender: bob, RoomID: roomA, Target: bob, Membership: "join"}); err != nil {
		t.Fatal(err)
	}
	inA := make(chan struct{})
	release := make(chan struct{})
	var mu sync.Mutex
	var lastA []string
	var sawB bool
	e.OnEphemeral(func(roomID string, ev map[string]any) {
		users := ev["content"].(map[string]any)["user_ids"].([]string)
		mu.Lock()
		defer mu.Unlock()
		switch roomID {
		case roomB:
			sawB = true
		case roomA:
			first := lastA == nil
			lastA = users
			if first {
				mu.Unlock()
				close(inA)
				<-release // a slow queue write in room A
				mu.Lock()
			}
		}
	})
	done := make(chan error, 1)
	go func() { done <- e.SetTyping(alice, roomA, true, time.Minute) }()
	<-inA
	// Room A's hand-off is stuck in the observer: room B's typing and a
	// further change in room A still return (within a generous bound:
	// before, they waited for A's hand-off, here for ever), and B is
	// handed off.
	others := make(chan error, 1)
	go func() {
		err := e.SetTyping(alice, roomB, true, time.Minute)
		if err == nil {
			err = e.SetTyping(bob, roomA, true, time.Minute)
		}
		others <- err
	}()
	select {
	case err := <-others:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("typing waited for another hand-off to end")
	}
	mu.Lock()
	b := sawB
	mu.Unlock()
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !b {
		t.Fatal("room B's typing was not handed off while room A's hand-off ran")
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(lastA, []string{alice, bob}) {
		t.Fatalf("room A's last hand-off: %v, want both typing", lastA)
	}
}
