package e2e

import (
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// TestDoneMeansFlow is the whole first-use story: register, create a named
// room with an alias, invite, join by alias, chat both ways over
// incremental /sync, restart the daemon, and find everything still there,
// including a sync token handed out before the restart.
func TestDoneMeansFlow(t *testing.T) {
	t.Parallel()
	d := StartDaemon(t)
	alice := d.Register("alice")
	bob := d.Register("bob")

	roomID := CreateRoom(t, alice, &mautrix.ReqCreateRoom{
		Name: "Hearth e2e", Topic: "where tests talk", RoomAliasName: "hearth-e2e", Preset: "private_chat",
	})
	alias := id.NewRoomAlias("hearth-e2e", serverName)

	// Bob's sync position before he is invited.
	bobTok := Quiesce(t, bob, Sync(t, bob, "", "", 0).NextBatch)
	aliceTok := Quiesce(t, alice, Sync(t, alice, "", "", 0).NextBatch)

	_, err := alice.InviteUser(ctx(t), roomID, &mautrix.ReqInviteUser{UserID: bob.UserID})
	noErr(t, err, "alice invites bob")

	resp := SyncUntil(t, bob, bobTok, "", "bob's invite", func(r *mautrix.RespSync) bool {
		return r.Rooms.Invite[roomID] != nil
	})
	var invitedBy id.UserID
	var inviteName string
	for _, ev := range resp.Rooms.Invite[roomID].State.Events {
		switch {
		case ev.Type == event.StateMember && ev.GetStateKey() == bob.UserID.String():
			if m, _ := ev.Content.Raw["membership"].(string); m != "invite" {
				t.Errorf("invite_state member event of bob has membership %q", m)
			}
			invitedBy = ev.Sender
		case ev.Type == event.StateRoomName:
			inviteName, _ = ev.Content.Raw["name"].(string)
		}
	}
	if invitedBy != alice.UserID || inviteName != "Hearth e2e" {
		t.Errorf("invite_state: inviter %q, room name %q; want %s and %q", invitedBy, inviteName, alice.UserID, "Hearth e2e")
	}
	bobTok = resp.NextBatch

	joined, err := bob.JoinRoom(ctx(t), alias.String(), nil)
	noErr(t, err, "bob joins %s", alias)
	if joined.RoomID != roomID {
		t.Fatalf("join by alias gave room %s, want %s", joined.RoomID, roomID)
	}
	resp = SyncUntil(t, bob, bobTok, "", "bob's joined room", func(r *mautrix.RespSync) bool {
		return r.Rooms.Join[roomID] != nil
	})
	bobTok = resp.NextBatch
	// The sync that brings the join brings the room's whole state, between
	// its state and timeline sections.
	have := map[string]bool{}
	for _, ev := range append(resp.Rooms.Join[roomID].State.Events, resp.Rooms.Join[roomID].Timeline.Events...) {
		if ev.StateKey != nil {
			have[ev.Type.Type+"|"+*ev.StateKey] = true
		}
	}
	for _, k := range []string{"m.room.create|", "m.room.power_levels|", "m.room.join_rules|", "m.room.name|",
		"m.room.topic|", "m.room.canonical_alias|", "m.room.member|" + alice.UserID.String(), "m.room.member|" + bob.UserID.String()} {
		if !have[k] {
			t.Errorf("bob's first sync after joining lacks state %s", k)
		}
	}
	if resp.Rooms.Invite[roomID] != nil {
		t.Errorf("the room is still in rooms.invite after bob joined")
	}

	// Nobody else gets in: the room is invite-only, and unknown aliases are 404.
	eve := d.Register("eve")
	_, err = eve.JoinRoom(ctx(t), alias.String(), nil)
	wantMatrixErr(t, err, 403, "M_FORBIDDEN", "uninvited eve joins by alias")
	_, err = eve.JoinRoom(ctx(t), "#no-such-room:"+serverName, nil)
	wantMatrixErr(t, err, 404, "M_NOT_FOUND", "join an unknown alias")

	// Chat both ways; each side sees the other's messages via incremental sync.
	var sent []id.EventID
	for i := range 3 {
		eid := SendText(t, alice, roomID, "alice to bob "+string(rune('a'+i)))
		sent = append(sent, eid)
		bobTok = SyncUntil(t, bob, bobTok, "", "alice's message", func(r *mautrix.RespSync) bool {
			return TimelineHas(r, roomID, eid)
		}).NextBatch

		eid = SendText(t, bob, roomID, "bob to alice "+string(rune('a'+i)))
		sent = append(sent, eid)
		aliceTok = SyncUntil(t, alice, aliceTok, "", "bob's message", func(r *mautrix.RespSync) bool {
			return TimelineHas(r, roomID, eid)
		}).NextBatch
	}
	bobTok = Quiesce(t, bob, bobTok)

	// Sent after bob's last sync: the old token must bring it after the restart.
	beforeRestart := SendText(t, alice, roomID, "sent just before the restart")
	sent = append(sent, beforeRestart)

	historyBefore := eventIDs(History(t, alice, roomID, "", 4))
	stateBefore := must(alice.State(ctx(t), roomID)).get(t)

	d.Restart()

	// Old access tokens survive a restart.
	if _, err := alice.Whoami(ctx(t)); err != nil {
		t.Errorf("alice's access token from before the restart: %v", err)
	}
	alice2 := d.Login("alice")
	bob2 := d.Login("bob")
	afterRestart := SendText(t, alice2, roomID, "sent just after the restart")

	for _, c := range []*mautrix.Client{alice2, bob2} {
		rooms := must(c.JoinedRooms(ctx(t))).get(t)
		if !slices.Contains(rooms.JoinedRooms, roomID) {
			t.Errorf("%s's joined rooms after restart: %v, want %s", c.UserID, rooms.JoinedRooms, roomID)
		}
		members := must(c.JoinedMembers(ctx(t), roomID)).get(t)
		_, hasAlice := members.Joined[alice.UserID]
		_, hasBob := members.Joined[bob.UserID]
		if len(members.Joined) != 2 || !hasAlice || !hasBob {
			t.Errorf("joined members after restart as %s: %v", c.UserID, members.Joined)
		}
	}

	// State is unchanged.
	stateAfter := must(bob2.State(ctx(t), roomID)).get(t)
	for typ, byKey := range stateBefore {
		for sk, ev := range byKey {
			got := stateAfter[typ][sk]
			if got == nil || got.ID != ev.ID {
				t.Errorf("state %s/%q after restart: %v, want event %s", typ.Type, sk, got, ev.ID)
			}
		}
	}
	var name event.RoomNameEventContent
	noErr(t, bob2.StateEvent(ctx(t), roomID, event.StateRoomName, "", &name), "room name")
	var topic event.TopicEventContent
	noErr(t, bob2.StateEvent(ctx(t), roomID, event.StateTopic, "", &topic), "room topic")
	var canon event.CanonicalAliasEventContent
	noErr(t, bob2.StateEvent(ctx(t), roomID, event.StateCanonicalAlias, "", &canon), "canonical alias")
	if name.Name != "Hearth e2e" || topic.Topic != "where tests talk" || canon.Alias != alias {
		t.Errorf("after restart: name %q, topic %q, alias %q", name.Name, topic.Topic, canon.Alias)
	}
	res := must(bob2.ResolveAlias(ctx(t), alias)).get(t)
	if res.RoomID != roomID {
		t.Errorf("alias resolves to %s after restart, want %s", res.RoomID, roomID)
	}

	// Full history, in the same order, plus the new message.
	historyAfter := eventIDs(History(t, bob2, roomID, "", 3))
	want := append(slices.Clone(historyBefore), afterRestart)
	if !slices.Equal(historyAfter, want) {
		t.Errorf("history after restart:\n got %v\nwant %v", historyAfter, want)
	}
	for _, eid := range sent {
		if !slices.Contains(historyAfter, eid) {
			t.Errorf("message %s missing from history after restart", eid)
		}
	}

	// /context around a message from before the restart.
	mid := len(historyAfter) / 2
	cx, err := bob2.Context(ctx(t), roomID, historyAfter[mid], nil, 4)
	noErr(t, err, "/context after restart")
	if cx.Event == nil || cx.Event.ID != historyAfter[mid] {
		t.Errorf("/context event: %v, want %s", cx.Event, historyAfter[mid])
	}
	var before []id.EventID
	for _, ev := range cx.EventsBefore { // newest first
		before = append(before, ev.ID)
	}
	slices.Reverse(before)
	if want := historyAfter[max(0, mid-len(before)):mid]; len(before) == 0 || !slices.Equal(before, want) {
		t.Errorf("/context events_before: %v, want %v", before, want)
	}
	var after []id.EventID
	for _, ev := range cx.EventsAfter {
		after = append(after, ev.ID)
	}
	if want := historyAfter[mid+1 : min(len(historyAfter), mid+1+len(after))]; len(after) == 0 || !slices.Equal(after, want) {
		t.Errorf("/context events_after: %v, want %v", after, want)
	}

	// Bob's token from before the restart still works and yields exactly
	// what happened after it.
	var got []id.EventID
	SyncUntil(t, bob2, bobTok, "", "messages around the restart", func(r *mautrix.RespSync) bool {
		got = append(got, TimelineIDs(r, roomID)...)
		return slices.Contains(got, afterRestart)
	})
	if !slices.Equal(got, []id.EventID{beforeRestart, afterRestart}) {
		t.Errorf("incremental sync from a pre-restart token: got %v, want [%s %s]", got, beforeRestart, afterRestart)
	}
}
