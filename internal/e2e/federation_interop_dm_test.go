package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// TestInteropDirectMessageToStrictServer is how Element starts a DM with
// someone on another implementation: createRoom with is_direct and the
// invitee in invite. The invitee's server (the strict peer) gets the
// invite through /v2/invite and countersigns it; the room keeps that
// signed invite; no event or EDU of the room reaches the peer before its
// user joins (a strict server refuses them and then refuses the join);
// the invitee then joins with make_join/send_join and gets the room's new
// messages through /send.
func TestInteropDirectMessageToStrictServer(t *testing.T) {
	t.Parallel()
	peer, hs1 := startWithPeer(t, true)
	alice := hs1.Register("alice")
	carol := id.UserID("@carol:" + peerName)

	resp, err := alice.CreateRoom(ctx(t), &mautrix.ReqCreateRoom{Preset: "trusted_private_chat", IsDirect: true,
		Invite: []id.UserID{carol}})
	noErr(t, err, "alice creates a DM with carol@%s", peerName)
	roomID := resp.RoomID

	// createRoom answers after the invite went out.
	inv := peer.invited(roomID.String())
	if inv == nil {
		t.Fatalf("the peer got no /v2/invite for the DM; requests: %v", paths(peer.requestsTo("/_matrix/federation/")))
	}
	if sk := inv.StateKey(); sk == nil || *sk != carol.String() || !gjson.GetBytes(inv.Content(), "is_direct").Bool() {
		t.Fatalf("invite the peer got: %s", inv.JSON())
	}
	// The room keeps the invite as the peer countersigned it.
	mem, err := alice.FullStateEvent(ctx(t), roomID, event.StateMember, carol.String())
	noErr(t, err, "carol's member event on hs1")
	if mem.ID.String() != inv.EventID() || mem.Content.Raw["membership"] != "invite" {
		t.Fatalf("carol's member event on hs1 is %s (%v), want the countersigned invite %s", mem.ID, mem.Content.Raw, inv.EventID())
	}

	// Before carol joins: a message, typing and a receipt in the DM.
	msg := SendText(t, alice, roomID, "are you there?")
	_, err = alice.UserTyping(ctx(t), roomID, true, 10*time.Second)
	noErr(t, err, "alice types")
	noErr(t, alice.SendReceipt(ctx(t), roomID, msg, event.ReceiptTypeRead, nil), "alice's receipt")
	// A sentinel: a room the peer is in gets a message after all that;
	// the daemon's queue sends in order, so once the sentinel is there,
	// anything of the DM queued for the peer would have come first.
	lobby := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	peer.join("lobbyist", lobby.String())
	SendText(t, alice, lobby, "sentinel")
	waitFor(t, "the sentinel at the peer", func() (int, bool) {
		for _, pdu := range peer.sentPDUs(lobby.String()) {
			if pdu.Get("content.body").String() == "sentinel" {
				return 0, true
			}
		}
		return 0, false
	})
	if got := peer.sentPDUs(roomID.String()); len(got) != 0 {
		t.Errorf("the DM's events reached the peer before carol joined: %v", got)
	}
	if got := peer.sentEDUs(roomID.String()); len(got) != 0 {
		t.Errorf("the DM's EDUs reached the peer before carol joined: %v", got)
	}
	if r := peer.refusals(); len(r) != 0 {
		t.Fatalf("the strict peer refused PDUs: %+v", r)
	}

	// carol accepts: make_join and send_join through hs1.
	peer.join("carol", roomID.String())
	waitMembership(t, alice, roomID, carol, "carol joined, as hs1 sees it", "join")
	SendText(t, alice, roomID, "welcome carol")
	waitFor(t, "alice's message at the peer", func() (int, bool) {
		for _, pdu := range peer.sentPDUs(roomID.String()) {
			if pdu.Get("content.body").String() == "welcome carol" {
				return 0, true
			}
		}
		return 0, false
	})
	if r := peer.refusals(); len(r) != 0 {
		t.Fatalf("the strict peer refused PDUs: %+v", r)
	}
	if l := peer.latest(roomID.String()); gjson.GetBytes(l.Content(), "body").String() != "welcome carol" {
		t.Errorf("the peer's newest event in the DM is %s", l.JSON())
	}
}

// TestInteropDirectMessageBetweenHearths is the same DM between two
// Hearth daemons and their clients: alice@hs1 creates it with bob@hs2 in
// invite, bob sees the invite (is_direct) in /sync, joins, and they chat.
func TestInteropDirectMessageBetweenHearths(t *testing.T) {
	t.Parallel()
	net := startFedNet(t, "hs1.test", "hs2.test")
	alice := net.Daemons["hs1.test"].Register("alice")
	bob := net.Daemons["hs2.test"].Register("bob")
	bobTok := Quiesce(t, bob, Sync(t, bob, "", "", 0).NextBatch)

	resp, err := alice.CreateRoom(ctx(t), &mautrix.ReqCreateRoom{Preset: "trusted_private_chat", IsDirect: true,
		Invite: []id.UserID{bob.UserID}, Name: "DM"})
	noErr(t, err, "alice creates a DM with bob@hs2")
	roomID := resp.RoomID
	sr := SyncUntil(t, bob, bobTok, "", "bob's DM invite on hs2", func(r *mautrix.RespSync) bool { return r.Rooms.Invite[roomID] != nil })
	direct := false
	for _, ev := range sr.Rooms.Invite[roomID].State.Events {
		if ev.Type == event.StateMember && ev.GetStateKey() == bob.UserID.String() {
			direct, _ = ev.Content.Raw["is_direct"].(bool)
		}
	}
	if !direct {
		t.Errorf("bob's invite is not marked is_direct: %v", sr.Rooms.Invite[roomID].State.Events)
	}
	aliceTok := Quiesce(t, alice, Sync(t, alice, "", "", 0).NextBatch)
	bobTok = Quiesce(t, bob, sr.NextBatch)

	_, err = bob.JoinRoomByID(ctx(t), roomID)
	noErr(t, err, "bob accepts the DM")
	waitMembership(t, alice, roomID, bob.UserID, "bob joined, as hs1 sees it", "join")
	SendText(t, alice, roomID, "hi bob")
	aliceTok = Quiesce(t, alice, aliceTok)
	var got []string
	SyncUntil(t, bob, bobTok, "", "alice's message on hs2", collectTexts(roomID, &got, 1))
	if got[0] != "hi bob" {
		t.Fatalf("bob got %q", got)
	}
	SendText(t, bob, roomID, "hi alice")
	got = nil
	SyncUntil(t, alice, aliceTok, "", "bob's message on hs1", collectTexts(roomID, &got, 1))
	if got[0] != "hi alice" {
		t.Fatalf("alice got %q", got)
	}
}

// paths lists the method and path of recorded requests, for messages.
func paths(reqs []peerRequest) string {
	var out []string
	for _, r := range reqs {
		out = append(out, r.Method+" "+r.Path)
	}
	return strings.Join(out, ", ")
}

// TestInteropDirectMessageInviteRefused: when the invitee's server
// refuses the invite, createRoom still creates the room and answers with
// it (the room exists either way; the client can invite again), without
// the invite, and the local invitees of the same request are invited.
func TestInteropDirectMessageInviteRefused(t *testing.T) {
	t.Parallel()
	peer, hs1 := startWithPeer(t, true)
	peer.setServerAnswer(answerRefuse)
	alice := hs1.Register("alice")
	dave := hs1.Register("dave")
	carol := id.UserID("@carol:" + peerName)

	resp, err := alice.CreateRoom(ctx(t), &mautrix.ReqCreateRoom{Preset: "private_chat",
		Invite: []id.UserID{carol, dave.UserID}, Name: "Refused"})
	noErr(t, err, "createRoom with an invitee whose server refuses")
	if len(peer.requestsTo("/_matrix/federation/v2/invite/")) == 0 {
		t.Fatal("the peer was never asked to countersign")
	}
	m := memberships(t, alice, resp.RoomID)
	if m[alice.UserID] != "join" || m[dave.UserID] != "invite" {
		t.Errorf("memberships %v: want alice joined and dave invited", m)
	}
	if _, ok := m[carol]; ok {
		t.Errorf("carol has membership %q although her server refused the invite", m[carol])
	}
}

// TestDirectMessageInRoomV12AcrossServers: a DM in room version 12, whose
// room IDs name no server, started with createRoom as Element does. The
// invite names bob as his server knows him (a profile query to hs2),
// like an invite through POST /invite, so alice's timeline reads "invited
// Bobby". bob accepts by room ID alone, as clients do for an invite: his
// server must join through the inviter's, the only server it knows in the
// room.
func TestDirectMessageInRoomV12AcrossServers(t *testing.T) {
	t.Parallel()
	net := startFedNet(t, "hs1.test", "hs2.test")
	alice := net.Daemons["hs1.test"].Register("alice")
	bob := net.Daemons["hs2.test"].Register("bob")
	noErr(t, bob.SetDisplayName(ctx(t), "Bobby"), "bob sets his display name")
	bobTok := Quiesce(t, bob, Sync(t, bob, "", "", 0).NextBatch)

	resp, err := alice.CreateRoom(ctx(t), &mautrix.ReqCreateRoom{Preset: "trusted_private_chat", IsDirect: true,
		Invite: []id.UserID{bob.UserID}, RoomVersion: "12"})
	noErr(t, err, "alice creates a v12 DM with bob@hs2")
	roomID := resp.RoomID
	if strings.Contains(roomID.String(), ":") {
		t.Fatalf("room v12 ID %s names a server", roomID)
	}
	var inv struct {
		Membership  string `json:"membership"`
		DisplayName string `json:"displayname"`
	}
	noErr(t, alice.StateEvent(ctx(t), roomID, event.StateMember, bob.UserID.String(), &inv), "bob's invite on hs1")
	if inv.Membership != "invite" || inv.DisplayName != "Bobby" {
		t.Errorf("bob's invite on hs1 = %+v, want membership invite and displayname Bobby", inv)
	}

	SyncUntil(t, bob, bobTok, "", "bob's DM invite on hs2", func(r *mautrix.RespSync) bool { return r.Rooms.Invite[roomID] != nil })
	_, err = bob.JoinRoomByID(ctx(t), roomID)
	noErr(t, err, "bob accepts the DM by room ID")
	waitMembership(t, alice, roomID, bob.UserID, "bob joined, as hs1 sees it", "join")
	aliceTok := Quiesce(t, alice, Sync(t, alice, "", "", 0).NextBatch)
	SendText(t, bob, roomID, "hi alice")
	var got []string
	SyncUntil(t, alice, aliceTok, "", "bob's message on hs1", collectTexts(roomID, &got, 1))
	if got[0] != "hi alice" {
		t.Fatalf("alice got %q", got)
	}
}
