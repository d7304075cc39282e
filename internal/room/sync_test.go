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

func join(t *testing.T, e *Engine, user, roomID string) {
	t.Helper()
	if _, err := e.ChangeMembership(context.Background(), MembershipRequest{Sender: user, RoomID: roomID, Target: user, Membership: "join"}); err != nil {
		t.Fatalf("%s joins: %v", user, err)
	}
}

func say(t *testing.T, e *Engine, user, roomID, body string) {
	t.Helper()
	content, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": body})
	if _, err := e.Send(context.Background(), SendRequest{Sender: user, Device: "D", RoomID: roomID, Type: "m.room.message",
		Content: content, TxnID: body}); err != nil {
		t.Fatalf("send %q: %v", body, err)
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
	join(t, e, bob, roomID)
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
		say(t, e, alice, roomID, fmt.Sprintf("alice message 1-%d", i))
	}
	since, _ := e.Pos()
	for i := range 4 {
		say(t, e, alice, roomID, fmt.Sprintf("alice message 2-%d", i))
	}
	join(t, e, bob, roomID)
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
