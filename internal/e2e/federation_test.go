package e2e

import (
	"fmt"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// collectTexts returns a SyncUntil predicate that gathers the bodies of
// m.room.message events in roomID, in timeline order, into *got, and is
// satisfied once it has want of them.
func collectTexts(roomID id.RoomID, got *[]string, want int) func(*mautrix.RespSync) bool {
	return func(r *mautrix.RespSync) bool {
		if jr := r.Rooms.Join[roomID]; jr != nil {
			for _, ev := range jr.Timeline.Events {
				if ev.Type == event.EventMessage {
					body, _ := ev.Content.Raw["body"].(string)
					*got = append(*got, body)
				}
			}
		}
		return len(*got) >= want
	}
}

// TestFederationJoinAndChat is the main story over real TLS
// between two daemons: alice@hs1 makes a room, bob@hs2 joins it by alias,
// they chat both ways; hs2 is stopped while alice sends 200 messages, and
// after its restart bob receives every one of them, in order.
func TestFederationJoinAndChat(t *testing.T) {
	t.Parallel()
	net := startFedNet(t, "hs1.test", "hs2.test")
	hs1, hs2 := net.Daemons["hs1.test"], net.Daemons["hs2.test"]
	alice := hs1.Register("alice")
	bob := hs2.Register("bob")

	roomID := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Name: "Across servers", RoomAliasName: "lobby", Preset: "public_chat"})
	aliceTok := Quiesce(t, alice, Sync(t, alice, "", "", 0).NextBatch)

	aliceTok = joinOverFederation(t, alice, bob, "#lobby:hs1.test", roomID, aliceTok)
	// hs2 has the room's state from the join: its name and both members.
	var name struct {
		Name string `json:"name"`
	}
	noErr(t, bob.StateEvent(ctx(t), roomID, event.StateRoomName, "", &name), "bob reads the room name on hs2")
	if name.Name != "Across servers" {
		t.Errorf("room name on hs2 = %q", name.Name)
	}
	bobTok := Quiesce(t, bob, Sync(t, bob, "", "", 0).NextBatch)

	SendText(t, alice, roomID, "hello bob")
	aliceTok = Quiesce(t, alice, aliceTok)
	var got []string
	SyncUntil(t, bob, bobTok, "", "alice's message on hs2", collectTexts(roomID, &got, 1))
	if got[0] != "hello bob" {
		t.Fatalf("bob got %q", got)
	}
	bobTok = Quiesce(t, bob, bobTok)
	SendText(t, bob, roomID, "hello alice")
	got = nil
	SyncUntil(t, alice, aliceTok, "", "bob's message on hs1", collectTexts(roomID, &got, 1))
	if got[0] != "hello alice" {
		t.Fatalf("alice got %q", got)
	}

	// hs2 goes away; hs1 queues what alice sends and delivers it when
	// hs2 is back.
	Quiesce(t, bob, bobTok)
	noErr(t, hs2.Stop(), "stop hs2")
	var want []string
	for i := range 200 {
		msg := fmt.Sprintf("while you were out %03d", i)
		want = append(want, msg)
		SendText(t, alice, roomID, msg)
	}
	hs2.Start()
	// A catch-up of 200 events reaches /sync as limited timelines (as it
	// should), so read the room's history instead.
	got = waitFor(t, "the 200 messages on hs2", func() ([]string, bool) {
		texts := roomTexts(t, bob, roomID)
		return texts, len(texts) >= 202
	})[2:]
	if len(got) != 200 {
		t.Fatalf("bob got %d messages, want 200", len(got))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("message %d on hs2 is %q, want %q (order or loss)", i, got[i], want[i])
		}
	}
}

// TestFederationInviteAndBan: alice@hs1 invites users of hs2 into a
// private room; bob accepts and carol declines, both through federation;
// then alice bans bob, and the ban holds on hs2 too: bob can neither send
// there nor join again.
func TestFederationInviteAndBan(t *testing.T) {
	t.Parallel()
	net := startFedNet(t, "hs1.test", "hs2.test")
	hs1, hs2 := net.Daemons["hs1.test"], net.Daemons["hs2.test"]
	alice := hs1.Register("alice")
	bob := hs2.Register("bob")
	carol := hs2.Register("carol")
	roomID := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Name: "Private", Preset: "private_chat"})
	bobTok := Quiesce(t, bob, Sync(t, bob, "", "", 0).NextBatch)
	carolTok := Quiesce(t, carol, Sync(t, carol, "", "", 0).NextBatch)

	for _, u := range []id.UserID{bob.UserID, carol.UserID} {
		_, err := alice.InviteUser(ctx(t), roomID, &mautrix.ReqInviteUser{UserID: u})
		noErr(t, err, "alice invites %s", u)
	}
	resp := SyncUntil(t, bob, bobTok, "", "bob's invite on hs2", func(r *mautrix.RespSync) bool { return r.Rooms.Invite[roomID] != nil })
	name := strippedName(resp.Rooms.Invite[roomID].State.Events)
	if name != "Private" {
		t.Errorf("bob's invite_state has room name %q, want Private", name)
	}
	SyncUntil(t, carol, carolTok, "", "carol's invite on hs2", func(r *mautrix.RespSync) bool { return r.Rooms.Invite[roomID] != nil })

	_, err := bob.JoinRoomByID(ctx(t), roomID)
	noErr(t, err, "bob accepts the invite")
	_, err = carol.LeaveRoom(ctx(t), roomID)
	noErr(t, err, "carol declines the invite")
	waitFor(t, "bob joined and carol gone, as hs1 sees it", func() (map[id.UserID]string, bool) {
		m := memberships(t, alice, roomID)
		return m, m[bob.UserID] == "join" && m[carol.UserID] == "leave"
	})
	SendText(t, bob, roomID, "thanks for having me")

	_, err = alice.BanUser(ctx(t), roomID, &mautrix.ReqBanUser{UserID: bob.UserID, Reason: "test"})
	noErr(t, err, "alice bans bob")
	waitMembership(t, bob, roomID, bob.UserID, "bob banned on hs2", "ban")
	_, err = bob.SendText(ctx(t), roomID, "am I still here?")
	wantMatrixErr(t, err, 403, "M_FORBIDDEN", "a banned bob sends on hs2")
	_, err = bob.JoinRoomByID(ctx(t), roomID)
	if err == nil {
		t.Fatal("a banned bob joined again through hs2")
	}
}

// TestFederationLateJoinBackfill: a third server joins a room after two
// others have talked in it; its user pages back through the whole
// history, which hs3 fetches from the others (/backfill), and everyone
// hears what she says.
func TestFederationLateJoinBackfill(t *testing.T) {
	t.Parallel()
	net := startFedNet(t, "hs1.test", "hs2.test", "hs3.test")
	alice := net.Daemons["hs1.test"].Register("alice")
	bob := net.Daemons["hs2.test"].Register("bob")
	carol := net.Daemons["hs3.test"].Register("carol")
	roomID := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Name: "History", RoomAliasName: "history", Preset: "public_chat"})
	_, err := bob.JoinRoom(ctx(t), "#history:hs1.test", nil)
	noErr(t, err, "bob joins")
	// Alice says 15 things, then bob answers with 15 once he has them, so
	// the history is one chain and its order is well defined.
	var want []string
	for i := range 30 {
		c := alice
		if i >= 15 {
			c = bob
		}
		if i == 15 {
			waitMessages(t, bob, roomID, 15)
		}
		msg := fmt.Sprintf("before carol %02d", i)
		want = append(want, msg)
		SendText(t, c, roomID, msg)
	}
	waitMessages(t, alice, roomID, 30) // everything reached hs1 before carol joins through it
	aliceTok := Quiesce(t, alice, Sync(t, alice, "", "", 0).NextBatch)
	bobTok := Quiesce(t, bob, Sync(t, bob, "", "", 0).NextBatch)

	_, err = carol.JoinRoom(ctx(t), "#history:hs1.test", nil)
	noErr(t, err, "carol@hs3 joins late")
	var got []string
	from := ""
	sawCreate := false
	for page := 0; page < 20 && !sawCreate; page++ {
		resp, err := carol.Messages(ctx(t), roomID, from, "", mautrix.DirectionBackward, nil, 10)
		noErr(t, err, "carol pages back")
		t.Logf("page %d from %q: %d events, end %q", page, from, len(resp.Chunk), resp.End)
		for _, ev := range resp.Chunk {
			switch ev.Type {
			case event.EventMessage:
				body, _ := ev.Content.Raw["body"].(string)
				got = append([]string{body}, got...)
			case event.StateCreate:
				sawCreate = true
			}
		}
		if resp.End == "" {
			break
		}
		from = resp.End
	}
	if !sawCreate {
		t.Errorf("carol's back-pagination never reached the create event")
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("carol's history:\n got %q\nwant %q", got, want)
	}

	SendText(t, carol, roomID, "hello from hs3")
	for _, c := range []struct {
		cl  *mautrix.Client
		tok string
	}{{alice, aliceTok}, {bob, bobTok}} {
		var texts []string
		SyncUntil(t, c.cl, c.tok, "", "carol's message", func(r *mautrix.RespSync) bool {
			collectTexts(roomID, &texts, 1)(r)
			return len(texts) > 0 && texts[len(texts)-1] == "hello from hs3"
		})
	}
}

// roomTexts pages back through the room's whole history as c sees it and
// returns the bodies of its messages, oldest first.
func roomTexts(t *testing.T, c *mautrix.Client, roomID id.RoomID) []string {
	t.Helper()
	var texts []string
	from := ""
	for range 100 {
		resp, err := c.Messages(ctx(t), roomID, from, "", mautrix.DirectionBackward, nil, 100)
		noErr(t, err, "page back through the room")
		for _, ev := range resp.Chunk {
			if ev.Type == event.EventMessage {
				body, _ := ev.Content.Raw["body"].(string)
				texts = append([]string{body}, texts...)
			}
		}
		if resp.End == "" {
			break
		}
		from = resp.End
	}
	return texts
}

// waitMessages waits until c's server has n m.room.message events in the
// room.
func waitMessages(t *testing.T, c *mautrix.Client, roomID id.RoomID, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d messages on %s's server", n, c.UserID), func() (int, bool) {
		resp, err := c.Messages(ctx(t), roomID, "", "", mautrix.DirectionBackward, nil, 100)
		noErr(t, err, "read the room")
		got := 0
		for _, ev := range resp.Chunk {
			if ev.Type == event.EventMessage {
				got++
			}
		}
		return got, got >= n
	})
}

// TestFederationStateConverges: alice@hs1 and bob@hs2 (both room admins)
// change the room's name and topic at the same time, so each server's
// events fork from what the other has not seen yet. Once both have sent a
// message after all of it, both servers hold the same room state: state
// resolution gave the same answer on each.
func TestFederationStateConverges(t *testing.T) {
	t.Parallel()
	net := startFedNet(t, "hs1.test", "hs2.test")
	alice := net.Daemons["hs1.test"].Register("alice")
	bob := net.Daemons["hs2.test"].Register("bob")
	roomID := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomAliasName: "race",
		PowerLevelOverride: &event.PowerLevelsEventContent{Users: map[id.UserID]int{alice.UserID: 100, bob.UserID: 100}}})
	_, err := bob.JoinRoom(ctx(t), "#race:hs1.test", nil)
	noErr(t, err, "bob joins")
	waitMembership(t, alice, roomID, bob.UserID, "bob joined as hs1 sees it", "join")

	done := make(chan error, 2)
	for _, c := range []*mautrix.Client{alice, bob} {
		go func() {
			for i := range 10 {
				who := c.UserID.Localpart()
				if _, err := c.SendStateEvent(ctx(t), roomID, event.StateRoomName, "", map[string]any{"name": fmt.Sprintf("%s %d", who, i)}); err != nil {
					done <- err
					return
				}
				if _, err := c.SendStateEvent(ctx(t), roomID, event.StateTopic, "", map[string]any{"topic": fmt.Sprintf("%s %d", who, i)}); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 2 {
		noErr(t, <-done, "concurrent state changes")
	}
	// Each side sends after seeing everything, so both heads merge.
	SendText(t, alice, roomID, "after the race (alice)")
	waitMessages(t, bob, roomID, 1)
	SendText(t, bob, roomID, "after the race (bob)")
	waitMessages(t, alice, roomID, 2)
	waitMessages(t, bob, roomID, 2)

	state := func(c *mautrix.Client) map[string]string {
		st, err := c.State(ctx(t), roomID)
		noErr(t, err, "%s reads the state", c.UserID)
		out := map[string]string{}
		for typ, byKey := range st {
			for sk, ev := range byKey {
				out[typ.Type+"|"+sk] = ev.ID.String()
			}
		}
		return out
	}
	s1, s2 := state(alice), state(bob)
	if fmt.Sprint(s1) != fmt.Sprint(s2) {
		t.Fatalf("the servers disagree on the room state:\nhs1 %v\nhs2 %v", s1, s2)
	}
}

// TestFederationConflictResolution forks a room across a network split
// with a known right answer: while hs1 is down, bob@hs2 renames the room;
// while hs2 is down, alice@hs1 bans bob. When both are back, state
// resolution must put the ban first and then refuse the rename it makes
// unauthorised, on both servers.
func TestFederationConflictResolution(t *testing.T) {
	t.Parallel()
	net := startFedNet(t, "hs1.test", "hs2.test")
	hs1, hs2 := net.Daemons["hs1.test"], net.Daemons["hs2.test"]
	alice := hs1.Register("alice")
	bob := hs2.Register("bob")
	dave := hs2.Register("dave")
	roomID := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Name: "Before the split", Preset: "public_chat", RoomAliasName: "split",
		PowerLevelOverride: &event.PowerLevelsEventContent{Users: map[id.UserID]int{alice.UserID: 100, bob.UserID: 50}}})
	for _, c := range []*mautrix.Client{bob, dave} {
		_, err := c.JoinRoom(ctx(t), "#split:hs1.test", nil)
		noErr(t, err, "%s joins", c.UserID)
	}
	waitFor(t, "both hs2 users joined, as hs1 sees it", func() (map[id.UserID]string, bool) {
		m := memberships(t, alice, roomID)
		return m, m[bob.UserID] == "join" && m[dave.UserID] == "join"
	})
	SendText(t, alice, roomID, "everyone is here")
	waitMessages(t, dave, roomID, 1)

	noErr(t, hs1.Stop(), "stop hs1")
	_, err := bob.SendStateEvent(ctx(t), roomID, event.StateRoomName, "", map[string]any{"name": "Bob's room now"})
	noErr(t, err, "bob renames the room while hs1 is away")
	noErr(t, hs2.Stop(), "stop hs2")
	hs1.Start()
	_, err = alice.BanUser(ctx(t), roomID, &mautrix.ReqBanUser{UserID: bob.UserID})
	noErr(t, err, "alice bans bob while hs2 is away")
	hs2.Start()

	for _, c := range []*mautrix.Client{alice, dave} {
		waitMembership(t, c, roomID, bob.UserID, "the ban on "+c.UserID.Homeserver(), "ban")
	}
	// Both servers now have both branches: let each send once on top.
	SendText(t, alice, roomID, "after the split (alice)")
	waitMessages(t, dave, roomID, 2)
	SendText(t, dave, roomID, "after the split (dave)")
	waitMessages(t, alice, roomID, 3)
	for _, c := range []*mautrix.Client{alice, dave} {
		var name struct {
			Name string `json:"name"`
		}
		noErr(t, c.StateEvent(ctx(t), roomID, event.StateRoomName, "", &name), "read the name on %s", c.UserID.Homeserver())
		if name.Name != "Before the split" {
			t.Errorf("room name on %s is %q: the rename by a user banned in the other branch survived", c.UserID.Homeserver(), name.Name)
		}
	}
}

// TestFederationKnock: bob@hs2 knocks on alice's knock-only room on hs1;
// his server shows the room in rooms.knock with the state hs1 sent, hs1
// shows the knock, and alice lets him in with an invite he accepts.
func TestFederationKnock(t *testing.T) {
	t.Parallel()
	net := startFedNet(t, "hs1.test", "hs2.test")
	alice := net.Daemons["hs1.test"].Register("alice")
	bob := net.Daemons["hs2.test"].Register("bob")
	roomID := knockOnlyRoom(t, alice, "Knock first", "")
	bobTok := Quiesce(t, bob, Sync(t, bob, "", "", 0).NextBatch)

	_, err := bob.KnockRoom(ctx(t), "#door:hs1.test", &mautrix.ReqKnockRoom{Reason: "let me in"})
	noErr(t, err, "bob knocks through hs2")
	resp := SyncUntil(t, bob, bobTok, "", "the knock on hs2", func(r *mautrix.RespSync) bool { return r.Rooms.Knock[roomID] != nil })
	name := strippedName(resp.Rooms.Knock[roomID].State.Events)
	if name != "Knock first" {
		t.Errorf("knock_state on hs2 has room name %q", name)
	}
	waitMembership(t, alice, roomID, bob.UserID, "the knock on hs1", "knock")
	_, err = alice.InviteUser(ctx(t), roomID, &mautrix.ReqInviteUser{UserID: bob.UserID})
	noErr(t, err, "alice invites the knocker")
	waitFor(t, "the invite on hs2", func() (bool, bool) {
		_, err := bob.JoinRoomByID(ctx(t), roomID)
		return err == nil, err == nil
	})
	waitMembership(t, alice, roomID, bob.UserID, "bob joined, as hs1 sees it", "join")
}

// TestFederationRoomVersions joins and chats across servers in rooms of
// the versions whose event and ID formats differ: v1 (event IDs with a
// server part, references with hashes), v3 (hash IDs), v6 (strict
// canonical JSON), v11 and v12 (room IDs without a server part, creators
// outrank everyone, state resolution v2.1).
func TestFederationRoomVersions(t *testing.T) {
	t.Parallel()
	net := startFedNet(t, "hs1.test", "hs2.test")
	alice := net.Daemons["hs1.test"].Register("alice")
	bob := net.Daemons["hs2.test"].Register("bob")
	for _, v := range []string{"1", "3", "6", "11", "12"} {
		alias := "v" + v
		roomID := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomAliasName: alias, RoomVersion: id.RoomVersion(v)})
		joined, err := bob.JoinRoom(ctx(t), "#"+alias+":hs1.test", nil)
		noErr(t, err, "bob joins a v%s room", v)
		if joined.RoomID != roomID {
			t.Fatalf("v%s: joined %s, want %s", v, joined.RoomID, roomID)
		}
		SendText(t, alice, roomID, "from alice in v"+v)
		waitMessages(t, bob, roomID, 1)
		SendText(t, bob, roomID, "from bob in v"+v)
		waitMessages(t, alice, roomID, 2)
		if texts := roomTexts(t, bob, roomID); fmt.Sprint(texts) != fmt.Sprintf("[from alice in v%s from bob in v%s]", v, v) {
			t.Errorf("v%s room on hs2: %q", v, texts)
		}
	}
}

// TestFederationRestrictedJoin: bob@hs2 may join a restricted room on hs1
// because he is in the room its rule names; hs1 authorises the join
// through one of its users (join_authorised_via_users_server). carol, in
// no such room, may not.
func TestFederationRestrictedJoin(t *testing.T) {
	t.Parallel()
	net := startFedNet(t, "hs1.test", "hs2.test")
	alice := net.Daemons["hs1.test"].Register("alice")
	bob := net.Daemons["hs2.test"].Register("bob")
	carol := net.Daemons["hs2.test"].Register("carol")
	club := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomAliasName: "club"})
	lounge := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat", RoomAliasName: "lounge",
		InitialState: allowMembersOf(event.JoinRuleRestricted, club)})
	_, err := bob.JoinRoom(ctx(t), "#club:hs1.test", nil)
	noErr(t, err, "bob joins the club")
	waitMembership(t, alice, club, bob.UserID, "bob in the club, as hs1 sees it", "join")
	_, err = bob.JoinRoom(ctx(t), "#lounge:hs1.test", nil)
	noErr(t, err, "bob joins the restricted lounge")
	wantAuthorisedVia(t, alice, lounge, bob.UserID, alice.UserID)
	_, err = carol.JoinRoom(ctx(t), "#lounge:hs1.test", nil)
	if err == nil {
		t.Fatal("carol, in no room the rule names, joined the restricted lounge")
	}
}

// strippedName is the room name among stripped state events (invite_state,
// knock_state).
func strippedName(evs []*event.Event) string {
	for _, ev := range evs {
		if ev.Type == event.StateRoomName {
			name, _ := ev.Content.Raw["name"].(string)
			return name
		}
	}
	return ""
}

// waitMembership waits until c's server shows user with membership want
// in the room.
func waitMembership(t *testing.T, c *mautrix.Client, roomID id.RoomID, user id.UserID, what, want string) {
	t.Helper()
	waitFor(t, what, func() (string, bool) {
		m := memberships(t, c, roomID)[user]
		return m, m == want
	})
}

// knockOnlyRoom creates c's room #door, which one enters by knocking
// (room version version, or the server's default when empty).
func knockOnlyRoom(t *testing.T, c *mautrix.Client, name string, version id.RoomVersion) id.RoomID {
	t.Helper()
	return CreateRoom(t, c, &mautrix.ReqCreateRoom{Name: name, Preset: "private_chat", RoomAliasName: "door", RoomVersion: version,
		InitialState: []*event.Event{{Type: event.StateJoinRules, Content: event.Content{Parsed: &event.JoinRulesEventContent{JoinRule: event.JoinRuleKnock}}}}})
}

// TestFederationKnockRescinded: bob@hs2 withdraws his knock on alice's
// room on hs1 with POST /leave. hs2 is not in the room, so the leave goes
// through a resident server (make_leave, send_leave; Client-Server API
// §"Knocking on rooms"): hs1 sees bob's membership become leave, and bob's
// /sync moves the room from knock to leave.
func TestFederationKnockRescinded(t *testing.T) {
	t.Parallel()
	net := startFedNet(t, "hs1.test", "hs2.test")
	alice := net.Daemons["hs1.test"].Register("alice")
	bob := net.Daemons["hs2.test"].Register("bob")
	// Version 12: the room ID names no server to leave through.
	roomID := knockOnlyRoom(t, alice, "", "12")
	bobTok := Quiesce(t, bob, Sync(t, bob, "", "", 0).NextBatch)
	_, err := bob.KnockRoom(ctx(t), "#door:hs1.test", &mautrix.ReqKnockRoom{})
	noErr(t, err, "bob knocks through hs2")
	bobTok = SyncUntil(t, bob, bobTok, "", "the knock on hs2", func(r *mautrix.RespSync) bool { return r.Rooms.Knock[roomID] != nil }).NextBatch
	waitMembership(t, alice, roomID, bob.UserID, "the knock on hs1", "knock")

	_, err = bob.LeaveRoom(ctx(t), roomID)
	noErr(t, err, "bob withdraws his knock")
	waitMembership(t, alice, roomID, bob.UserID, "the withdrawn knock on hs1", "leave")
	SyncUntil(t, bob, bobTok, "", "the room in bob's rooms.leave", func(r *mautrix.RespSync) bool { return r.Rooms.Leave[roomID] != nil })
}
