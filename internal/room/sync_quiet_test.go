package room

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"
)

// A user in many rooms, woken by news in some of them: each room with a
// message, a typing change or a receipt since the token is reported as
// before, and only the room whose timeline moved counts as active for the
// unread counts (quietJoined, SyncRooms.Active).
func TestSyncSkipsOnlyQuietRooms(t *testing.T) {
	e, _ := newEngine(t)
	var rooms []string
	for range 5 {
		r := publicRoom(t, e)
		mustJoin(t, e, bob, r)
		rooms = append(rooms, r)
	}
	msgRoom, quietRoom, typingRoom, receiptRoom := rooms[0], rooms[1], rooms[2], rooms[3]
	old := mustSend(t, e, message(receiptRoom, alice, "before the token"))
	since, sinceEph := e.Pos()

	mustSend(t, e, message(msgRoom, alice, "after the token"))
	if err := e.SetTyping(alice, typingRoom, true, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if moved, err := e.SetReceipt(context.Background(), alice, receiptRoom, "m.read", old, ""); err != nil || !moved {
		t.Fatalf("receipt: moved %v, %v", moved, err)
	}

	got := syncFrom(t, e, bob, since, sinceEph, EventFilter{})
	if jr := got.Join[msgRoom]; jr == nil || len(jr.Timeline.Events) != 1 {
		t.Errorf("the room with a message: %+v", jr)
	}
	for _, c := range []struct{ name, room, typ string }{{"typing", typingRoom, "m.typing"}, {"receipt", receiptRoom, "m.receipt"}} {
		jr := got.Join[c.room]
		if jr == nil || len(jr.Timeline.Events) != 0 || !hasEphemeral(jr, c.typ) {
			t.Errorf("the room with a %s and no event: %+v", c.name, jr)
		}
	}
	if jr, ok := got.Join[quietRoom]; ok {
		t.Errorf("the quiet room is reported: %+v", jr)
	}
	if !slices.Equal(got.Active, []string{msgRoom}) {
		t.Errorf("active rooms %v, want only %s", got.Active, msgRoom)
	}
}

// An incremental sync of a user in many quiet rooms reads little of each:
// its ID and newest position, not its timeline, visibility logs or state
// (measured as allocations, a count that does not depend on the machine).
func TestSyncQuietRoomsCostLittle(t *testing.T) {
	e, _ := newEngine(t)
	active := publicRoom(t, e)
	mustJoin(t, e, bob, active)
	allocs := func() float64 {
		since, sinceEph := e.Pos()
		mustSend(t, e, message(active, alice, "news"))
		return testing.AllocsPerRun(20, func() { syncFrom(t, e, bob, since, sinceEph, EventFilter{}) })
	}
	base := allocs()
	const quiet = 40
	for range quiet {
		mustJoin(t, e, bob, publicRoom(t, e))
	}
	// 3.4 at the time of writing (the membership record and the room's
	// ID); 24 when each room's timeline, visibility logs and state were
	// read.
	if per := (allocs() - base) / quiet; per > 8 {
		t.Errorf("%.1f allocations per quiet room, want at most 8", per)
	}
}

func hasEphemeral(jr *JoinedRoom, typ string) bool {
	for _, raw := range jr.Ephemeral {
		var ev struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(raw, &ev) == nil && ev.Type == typ {
			return true
		}
	}
	return false
}

// The memo of room heads a /sync filled keeps up with later writes: a
// message sent after the memo learnt the room as quiet is reported.
func TestSyncQuietMemoFollowsWrites(t *testing.T) {
	e, _ := newEngine(t)
	roomID := publicRoom(t, e)
	mustJoin(t, e, bob, roomID)
	since, sinceEph := e.Pos()
	if jr, ok := syncFrom(t, e, bob, since, sinceEph, EventFilter{}).Join[roomID]; ok {
		t.Fatalf("the room has news at the token itself: %+v", jr)
	}
	mustSend(t, e, message(roomID, alice, "after the memo"))
	jr := syncFrom(t, e, bob, since, sinceEph, EventFilter{}).Join[roomID]
	if jr == nil || len(jr.Timeline.Events) != 1 {
		t.Fatalf("the message sent after the memo was filled: %+v", jr)
	}
}
