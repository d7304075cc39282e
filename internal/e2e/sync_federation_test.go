package e2e

import (
	"fmt"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// syncedState returns a joined room's state section in a /sync, by
// type and state key.
func syncedState(resp *mautrix.RespSync, roomID id.RoomID) map[string]*event.Event {
	out := map[string]*event.Event{}
	if jr := resp.Rooms.Join[roomID]; jr != nil {
		for _, ev := range jr.State.Events {
			out[ev.Type.Type+"|"+ev.GetStateKey()] = ev
		}
	}
	return out
}

// TestSyncRoomJoinedOverFederation: bob@hs2 joins alice's encrypted room
// on hs1, which has history from before him. His first /sync after the
// join, incremental or initial, must carry the room's state at the join
// (its creation, name, encryption and alice's membership), as clients
// cannot otherwise know the room is encrypted, and a timeline marked
// limited, since the room's history goes back further than his join
// (Client-Server API §"Syncing"). A lazy-loading sync still carries the
// state that is not members. Later, while hs2 catches up on what it
// missed, a state change inside a gap of a limited sync reaches him in
// the state section.
func TestSyncRoomJoinedOverFederation(t *testing.T) {
	t.Parallel()
	net := startFedNet(t, "hs1.test", "hs2.test")
	hs1, hs2 := net.Daemons["hs1.test"], net.Daemons["hs2.test"]
	alice := hs1.Register("alice")
	bob := hs2.Register("bob")

	roomID := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Name: "Sealed", RoomAliasName: "sealed", Preset: "public_chat",
		InitialState: []*event.Event{{Type: event.StateEncryption, StateKey: ptr(""),
			Content: event.Content{Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}}}}})
	for i := range 12 {
		SendText(t, alice, roomID, fmt.Sprintf("before bob %02d", i))
	}
	aliceTok := Quiesce(t, alice, Sync(t, alice, "", "", 0).NextBatch)
	bobTok := Quiesce(t, bob, Sync(t, bob, "", "", 0).NextBatch)

	joinOverFederation(t, alice, bob, "#sealed:hs1.test", roomID, aliceTok)

	wantState := []string{"m.room.create|", "m.room.name|", "m.room.encryption|", "m.room.join_rules|",
		"m.room.power_levels|", "m.room.member|" + alice.UserID.String()}
	check := func(what string, resp *mautrix.RespSync, want []string) {
		t.Helper()
		jr := resp.Rooms.Join[roomID]
		if jr == nil {
			t.Fatalf("%s: the room is not in rooms.join", what)
		}
		state := syncedState(resp, roomID)
		for _, k := range want {
			if state[k] == nil {
				t.Errorf("%s: state lacks %s (has %d events)", what, k, len(state))
			}
		}
		joinSeen := false
		for _, ev := range jr.Timeline.Events {
			joinSeen = joinSeen || (ev.Type == event.StateMember && ev.GetStateKey() == bob.UserID.String())
		}
		if !joinSeen {
			t.Errorf("%s: bob's join is not in the timeline", what)
		}
		if !jr.Timeline.Limited {
			t.Errorf("%s: timeline not limited, though the room's history starts before it (%d events)", what, len(jr.Timeline.Events))
		}
		if jr.Timeline.PrevBatch == "" {
			t.Errorf("%s: no prev_batch to page back from", what)
		}
	}
	inc := SyncUntil(t, bob, bobTok, "", "the room in bob's sync", func(r *mautrix.RespSync) bool { return r.Rooms.Join[roomID] != nil })
	check("incremental sync after the join", inc, wantState)
	bobTok = inc.NextBatch

	check("initial sync", Sync(t, bob, "", "", 0), wantState)
	lazy := Sync(t, bob, "", `{"room":{"state":{"lazy_load_members":true}}}`, 0)
	check("initial lazy-loading sync", lazy, wantState[:5])
	if syncedState(lazy, roomID)["m.room.member|"+alice.UserID.String()] != nil {
		t.Errorf("lazy-loading sync carries the membership of alice, who is not in its timeline")
	}

	// The client can page back from prev_batch into the history before
	// the join.
	hist := History(t, bob, roomID, Sync(t, bob, "", "", 0).Rooms.Join[roomID].Timeline.PrevBatch, 20)
	msgs := 0
	for _, ev := range hist {
		if ev.Type == event.EventMessage {
			msgs++
		}
	}
	if msgs != 12 {
		t.Errorf("paging back from prev_batch gave %d of the 12 messages before the join", msgs)
	}

	// hs2 is away while alice renames the room and says more than a
	// timeline holds: bob's next sync is limited, and the rename, inside
	// the gap, is in its state section.
	bobTok = Quiesce(t, bob, bobTok)
	noErr(t, hs2.Stop(), "stop hs2")
	_, err := alice.SendStateEvent(ctx(t), roomID, event.StateRoomName, "", map[string]any{"name": "Sealed, renamed"})
	noErr(t, err, "alice renames the room")
	for i := range 15 {
		SendText(t, alice, roomID, fmt.Sprintf("while bob was out %02d", i))
	}
	hs2.Start()
	var renamed bool
	SyncUntil(t, bob, bobTok, "", "alice's last message on hs2", func(r *mautrix.RespSync) bool {
		jr := r.Rooms.Join[roomID]
		if jr == nil {
			return false
		}
		for _, evs := range [][]*event.Event{jr.State.Events, jr.Timeline.Events} {
			for _, ev := range evs {
				if ev.Type == event.StateRoomName && ev.Content.Raw["name"] == "Sealed, renamed" {
					renamed = true
				}
			}
		}
		return len(jr.Timeline.Events) > 0 && body(jr.Timeline.Events[len(jr.Timeline.Events)-1]) == "while bob was out 14"
	})
	if !renamed {
		t.Errorf("the rename made while hs2 was away never reached bob's sync")
	}
}
