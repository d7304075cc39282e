package room

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// publicRoom makes a public room of alice's and returns it.
func publicRoom(t *testing.T, e *Engine) string {
	t.Helper()
	roomID, err := e.CreateRoom(context.Background(), alice, Profile{DisplayName: "Alice"}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return roomID
}

func mustJoin(t *testing.T, e *Engine, user, roomID string) {
	t.Helper()
	if err := join(e, user, roomID); err != nil {
		t.Fatalf("%s joins: %v", user, err)
	}
}

// syncFrom is bob's sync from the given token to now.
func syncFrom(t *testing.T, e *Engine, user string, since, sinceEph uint64, timeline EventFilter) *SyncRooms {
	t.Helper()
	now, nowEph := e.Pos()
	rooms, err := e.Sync(SyncRequest{UserID: user, Since: since, Now: now, SinceEph: sinceEph, NowEph: nowEph, Timeline: timeline})
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return rooms
}

// Complement "Typing can be explicitly stopped": a stop reaches the others'
// sync as an m.typing with the user gone, also from a token taken before
// anyone had typed (its typing counter is 0).
func TestSyncTypingStopFromFirstToken(t *testing.T) {
	e, _ := newEngine(t)
	roomID := publicRoom(t, e)
	mustJoin(t, e, bob, roomID)
	since, sinceEph := e.Pos()
	if sinceEph != 0 {
		t.Fatalf("typing counter %d before anyone typed", sinceEph)
	}
	if err := e.SetTyping(alice, roomID, true, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := e.SetTyping(alice, roomID, false, 0); err != nil {
		t.Fatal(err)
	}
	jr := syncFrom(t, e, bob, since, sinceEph, EventFilter{}).Join[roomID]
	if jr == nil {
		t.Fatal("the room is not in bob's sync after alice stopped typing")
	}
	var found bool
	for _, raw := range jr.Ephemeral {
		var ev struct {
			Type    string `json:"type"`
			Content struct {
				UserIDs []string `json:"user_ids"`
			} `json:"content"`
		}
		json.Unmarshal(raw, &ev)
		if ev.Type == "m.typing" {
			found = true
			if len(ev.Content.UserIDs) != 0 {
				t.Errorf("typing users %v after alice stopped", ev.Content.UserIDs)
			}
		}
	}
	if !found {
		t.Errorf("no m.typing in bob's sync after alice stopped typing: %s", jr.Ephemeral)
	}
}

// Complement "Newly joined room has correct timeline in incremental sync":
// a room joined since the token comes with its latest events, including
// those from before the token, and is limited when they do not reach back
// to the room's creation.
func TestSyncNewlyJoinedRoomTimeline(t *testing.T) {
	e, _ := newEngine(t)
	roomID := publicRoom(t, e)
	for i := range 4 {
		mustSend(t, e, message(roomID, alice, fmt.Sprintf("alice message 1-%d", i)))
	}
	since, _ := e.Pos()
	for i := range 4 {
		mustSend(t, e, message(roomID, alice, fmt.Sprintf("alice message 2-%d", i)))
	}
	mustJoin(t, e, bob, roomID)
	jr := syncFrom(t, e, bob, since, 0, EventFilter{Types: []string{"m.room.message"}, Limit: 10}).Join[roomID]
	if jr == nil {
		t.Fatal("the newly joined room is not in bob's sync")
	}
	var bodies []string
	for _, ev := range jr.Timeline.Events {
		if ev.Type != "m.room.message" {
			t.Errorf("timeline has a %s, the filter asked for messages only", ev.Type)
		}
		var c struct{ Body string }
		json.Unmarshal(ev.Content, &c)
		bodies = append(bodies, c.Body)
	}
	if len(bodies) != 8 || bodies[0] != "alice message 1-0" {
		t.Errorf("timeline %q, want all 8 messages, from before the token too", bodies)
	}
	if !jr.Timeline.Limited {
		t.Errorf("timeline not limited, though its 10 events do not reach the room's creation")
	}

	// With room for the whole room the timeline starts at its creation
	// and is not limited.
	jr = syncFrom(t, e, bob, since, 0, EventFilter{Limit: 50}).Join[roomID]
	if jr.Timeline.Limited || jr.Timeline.Events[0].Type != "m.room.create" {
		t.Errorf("a timeline holding the whole room: limited %v, first event %s", jr.Timeline.Limited, jr.Timeline.Events[0].Type)
	}
}

// sytest "We should see our own leave event when rejecting an invite, even
// if history_visibility is restricted": bob declines an invite to a room
// whose history is for members only; the room moves to rooms.leave of his
// incremental sync, of a full-state one and of an initial one that includes
// left rooms, each with his leave in its timeline.
func TestSyncRejectedInviteInLeave(t *testing.T) {
	e, _ := newEngine(t)
	ctx := context.Background()
	roomID, err := e.CreateRoom(ctx, alice, Profile{DisplayName: "Alice"}, CreateRequest{Preset: "private_chat",
		InitialState: []StateEvent{{Type: "m.room.history_visibility", Content: json.RawMessage(`{"history_visibility":"joined"}`)}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ChangeMembership(ctx, MembershipRequest{Sender: alice, RoomID: roomID, Target: bob, Membership: "invite"}); err != nil {
		t.Fatalf("invite: %v", err)
	}
	since, _ := e.Pos()
	if syncFrom(t, e, bob, 0, 0, EventFilter{}).Invite[roomID] == nil {
		t.Fatal("bob's invite is not in his sync")
	}
	if _, err := e.ChangeMembership(ctx, MembershipRequest{Sender: bob, RoomID: roomID, Target: bob, Membership: "leave"}); err != nil {
		t.Fatalf("bob declines: %v", err)
	}
	now, _ := e.Pos()
	for _, req := range []SyncRequest{
		{Since: since},
		{Since: since, FullState: true},
		{IncludeLeave: true},
	} {
		req.UserID, req.Now = bob, now
		rooms, err := e.Sync(req)
		if err != nil {
			t.Fatal(err)
		}
		lr := rooms.Leave[roomID]
		if lr == nil {
			t.Errorf("since %d full_state %v: the declined room is not in rooms.leave", req.Since, req.FullState)
			continue
		}
		var own bool
		for _, ev := range lr.Timeline.Events {
			own = own || (ev.Type == "m.room.member" && *ev.StateKey == bob && ev.Sender == bob)
		}
		if !own {
			t.Errorf("since %d full_state %v: bob's leave is not in the timeline of rooms.leave (%d events)",
				req.Since, req.FullState, len(lr.Timeline.Events))
		}
	}
}

// A state change the timeline filter leaves out still reaches the client,
// in the state section of its incremental sync: the client must know the
// room's state whatever it asked to see in its timeline.
func TestSyncStateChangeHiddenByTimelineFilter(t *testing.T) {
	e, _ := newEngine(t)
	roomID := publicRoom(t, e)
	mustJoin(t, e, bob, roomID)
	since, _ := e.Pos()
	empty := ""
	if _, err := e.Send(context.Background(), SendRequest{Sender: alice, RoomID: roomID, Type: "m.room.topic", StateKey: &empty,
		Content: json.RawMessage(`{"topic":"hidden from the timeline"}`)}); err != nil {
		t.Fatal(err)
	}
	mustSend(t, e, message(roomID, alice, "after the topic"))
	jr := syncFrom(t, e, bob, since, 0, EventFilter{Types: []string{"m.room.message"}, Limit: 10}).Join[roomID]
	if jr == nil || len(jr.Timeline.Events) != 1 {
		t.Fatalf("bob's filtered sync: %+v", jr)
	}
	var topic bool
	for _, ev := range jr.State {
		topic = topic || ev.Type == "m.room.topic"
	}
	if !topic {
		t.Errorf("the topic change the timeline filter left out is not in the state section")
	}
}

// TestSyncLeavesOutIgnoredSenders: Client-Server API §"Ignoring Users":
// once ignored, a user's events no longer reach the client's sync, except
// state events, which the room's state needs.
func TestSyncLeavesOutIgnoredSenders(t *testing.T) {
	e, _ := newEngine(t)
	roomID := publicRoom(t, e)
	mustJoin(t, e, bob, roomID)
	since, sinceEph := e.Pos()
	mustSend(t, e, message(roomID, alice, "ignored"))
	sk := ""
	mustSend(t, e, SendRequest{Sender: alice, RoomID: roomID, Type: "m.room.topic", StateKey: &sk,
		Content: json.RawMessage(`{"topic":"still shown"}`)})

	now, nowEph := e.Pos()
	rooms, err := e.Sync(SyncRequest{UserID: bob, Since: since, Now: now, SinceEph: sinceEph, NowEph: nowEph,
		Ignored: map[string]bool{alice: true}})
	if err != nil {
		t.Fatal(err)
	}
	jr := rooms.Join[roomID]
	if jr == nil {
		t.Fatal("the room is missing from bob's sync")
	}
	var types []string
	for _, ev := range jr.Timeline.Events {
		types = append(types, ev.Type)
	}
	if fmt.Sprint(types) != "[m.room.topic]" {
		t.Errorf("bob's timeline holds %v, want alice's topic change alone", types)
	}
}
