package room

import (
	"context"
	"encoding/json"
	"testing"
)

// stateOf indexes a state section by type and state key, with each
// event's content.
func stateOf(evs []ClientEvent) map[string]string {
	out := map[string]string{}
	for _, ev := range evs {
		out[ev.Type+"|"+*ev.StateKey] = string(ev.Content)
	}
	return out
}

func setTopic(t *testing.T, e *Engine, roomID, topic string) {
	t.Helper()
	sk := ""
	content, _ := json.Marshal(map[string]string{"topic": topic})
	mustSend(t, e, SendRequest{Sender: alice, RoomID: roomID, Type: "m.room.topic", StateKey: &sk, Content: content})
}

// TestSyncStateAfter: MSC4222 (spec v1.16 use_state_after). A topic set
// and then set again within one incremental sync's timeline: state_after
// holds the second alone, though both are in the timeline, while the
// state section without the parameter stays as it was (the state at the
// start of the timeline: nothing changed before it). An initial sync
// whose timeline starts at the second topic gives that one in
// state_after and the first in state.
func TestSyncStateAfter(t *testing.T) {
	e, _ := newEngine(t)
	roomID := publicRoom(t, e)
	mustJoin(t, e, bob, roomID)
	since, _ := e.Pos()
	setTopic(t, e, roomID, "first")
	setTopic(t, e, roomID, "second")
	mustSend(t, e, message(roomID, alice, "after the topics"))
	now, _ := e.Pos()

	sync := func(req SyncRequest) *JoinedRoom {
		t.Helper()
		req.UserID, req.Now = bob, now
		rooms, err := e.Sync(req)
		if err != nil {
			t.Fatal(err)
		}
		jr := rooms.Join[roomID]
		if jr == nil {
			t.Fatalf("since %d: the room is not in bob's sync", req.Since)
		}
		return jr
	}

	after := sync(SyncRequest{Since: since, StateAfter: true})
	topics := 0
	for _, ev := range after.Timeline.Events {
		if ev.Type == "m.room.topic" {
			topics++
		}
	}
	if topics != 2 {
		t.Fatalf("the timeline holds %d topic events, want both", topics)
	}
	st := stateOf(after.State)
	if len(after.State) != 1 || st["m.room.topic|"] != `{"topic":"second"}` {
		t.Errorf("incremental state_after = %v, want the second topic alone", st)
	}
	if before := sync(SyncRequest{Since: since}); len(before.State) != 0 {
		t.Errorf("incremental state without use_state_after = %v, want nothing (as before MSC4222)", stateOf(before.State))
	}

	// full_state: all of the state at the end, though incremental.
	st = stateOf(sync(SyncRequest{Since: since, FullState: true, StateAfter: true}).State)
	if st["m.room.topic|"] != `{"topic":"second"}` || st["m.room.create|"] == "" || st["m.room.join_rules|"] == "" {
		t.Errorf("full_state state_after = %v, want the whole state at the end of the timeline", st)
	}

	// Initial syncs whose timeline (2 events) starts at the second topic.
	limit := EventFilter{Limit: 2}
	st = stateOf(sync(SyncRequest{Timeline: limit, StateAfter: true}).State)
	if st["m.room.topic|"] != `{"topic":"second"}` || st["m.room.create|"] == "" || st["m.room.member|"+bob] == "" {
		t.Errorf("initial state_after = %v, want the whole state at the end of the timeline", st)
	}
	st = stateOf(sync(SyncRequest{Timeline: limit}).State)
	if st["m.room.topic|"] != `{"topic":"first"}` {
		t.Errorf("initial state without use_state_after has topic %s, want the first (the state at the timeline's start)", st["m.room.topic|"])
	}

	// An incremental sync with nothing new in the room leaves it out.
	rooms, err := e.Sync(SyncRequest{UserID: bob, Since: now, Now: now, StateAfter: true})
	if err != nil {
		t.Fatal(err)
	}
	if rooms.Join[roomID] != nil {
		t.Errorf("a sync with nothing new carries the room: %v", stateOf(rooms.Join[roomID].State))
	}
}

// TestSyncStateAfterLeftRoom: a room left since the token carries in
// state_after the state at the end of its timeline, the user's own leave
// included, and the state changes before it (MSC4222); without the
// parameter an unlimited timeline brings no state section.
func TestSyncStateAfterLeftRoom(t *testing.T) {
	e, _ := newEngine(t)
	roomID := publicRoom(t, e)
	mustJoin(t, e, bob, roomID)
	since, _ := e.Pos()
	setTopic(t, e, roomID, "before bob left")
	if _, err := e.ChangeMembership(context.Background(), MembershipRequest{Sender: bob, RoomID: roomID, Target: bob, Membership: "leave"}); err != nil {
		t.Fatal(err)
	}
	setTopic(t, e, roomID, "after bob left")
	now, _ := e.Pos()

	left := func(stateAfter bool) *LeftRoom {
		t.Helper()
		rooms, err := e.Sync(SyncRequest{UserID: bob, Since: since, Now: now, StateAfter: stateAfter})
		if err != nil {
			t.Fatal(err)
		}
		lr := rooms.Leave[roomID]
		if lr == nil {
			t.Fatal("the left room is not in rooms.leave")
		}
		return lr
	}
	st := stateOf(left(true).State)
	if st["m.room.member|"+bob] != `{"membership":"leave"}` || st["m.room.topic|"] != `{"topic":"before bob left"}` || len(st) != 2 {
		t.Errorf("left room's state_after = %v, want bob's leave and the topic before it", st)
	}
	if lr := left(false); len(lr.State) != 0 {
		t.Errorf("left room's state without use_state_after = %v, want none (unlimited timeline)", stateOf(lr.State))
	}
}

// TestSyncStateAfterLazyMembers: with lazy-loading members, state_after
// holds the member events of the timeline's senders (and the syncing
// user's) and not the others': on an initial sync from the state at the
// end, on an incremental one added for a sender who joined before the
// token (Client-Server API §"Lazy-loading room members", MSC4222).
func TestSyncStateAfterLazyMembers(t *testing.T) {
	e, _ := newEngine(t)
	const carol = "@carol:test.local"
	roomID := publicRoom(t, e)
	mustJoin(t, e, bob, roomID)
	mustJoin(t, e, carol, roomID)
	since, _ := e.Pos()
	mustSend(t, e, message(roomID, carol, "hello"))
	now, _ := e.Pos()
	for what, req := range map[string]SyncRequest{
		"initial":     {Timeline: EventFilter{Limit: 1}},
		"incremental": {Since: since},
	} {
		req.UserID, req.Now, req.StateAfter, req.LazyLoadMembers = bob, now, true, true
		rooms, err := e.Sync(req)
		if err != nil {
			t.Fatal(err)
		}
		st := stateOf(rooms.Join[roomID].State)
		if st["m.room.member|"+carol] == "" {
			t.Errorf("%s: state_after lacks the member event of carol, the timeline's sender: %v", what, st)
		}
		if st["m.room.member|"+alice] != "" {
			t.Errorf("%s: state_after holds alice's member event, though she sent nothing in the timeline", what)
		}
	}
}
