package e2e

import (
	"net/url"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// TestRejectInviteNoServerLeft: declining an invite works even when no
// server in the room can take the leave, with federation on. A local
// room everyone left is declined here (Complement TestRoomsInvite "Invited
// user can reject invite for empty room"); a remote room whose inviting
// server is down is declined with an out-of-band leave. Either way the
// invite leaves /sync and the room shows in its leave section.
func TestRejectInviteNoServerLeft(t *testing.T) {
	t.Parallel()
	net := startFedNet(t, "hs1.test", "hs2.test")
	hs1, hs2 := net.Daemons["hs1.test"], net.Daemons["hs2.test"]
	alice, carol := hs1.Register("alice"), hs1.Register("carol")
	bob := hs2.Register("bob")

	declined := func(c *mautrix.Client, since string, roomID id.RoomID, what string) {
		t.Helper()
		_, err := c.LeaveRoom(ctx(t), roomID)
		noErr(t, err, "%s declines the invite", what)
		SyncUntil(t, c, since, "", what+": the room in rooms.leave", func(r *mautrix.RespSync) bool {
			return r.Rooms.Leave[roomID] != nil
		})
		if r := Sync(t, c, "", "", 0); r.Rooms.Invite[roomID] != nil {
			t.Errorf("%s: the declined invite is still in an initial sync", what)
		}
	}

	// A local room that everyone has left.
	local := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	carolTok := Quiesce(t, carol, Sync(t, carol, "", "", 0).NextBatch)
	_, err := alice.InviteUser(ctx(t), local, &mautrix.ReqInviteUser{UserID: carol.UserID})
	noErr(t, err, "alice invites carol")
	carolTok = SyncUntil(t, carol, carolTok, "", "carol's invite", func(r *mautrix.RespSync) bool {
		return r.Rooms.Invite[local] != nil
	}).NextBatch
	_, err = alice.LeaveRoom(ctx(t), local)
	noErr(t, err, "alice leaves")
	declined(carol, carolTok, local, "carol (local room, no one joined)")

	// A room on hs1, which then goes away.
	remote := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	bobTok := Quiesce(t, bob, Sync(t, bob, "", "", 0).NextBatch)
	_, err = alice.InviteUser(ctx(t), remote, &mautrix.ReqInviteUser{UserID: bob.UserID})
	noErr(t, err, "alice invites bob")
	bobTok = SyncUntil(t, bob, bobTok, "", "bob's invite on hs2", func(r *mautrix.RespSync) bool {
		return r.Rooms.Invite[remote] != nil
	}).NextBatch
	// The invite names bob as his server knows him (profile query over
	// federation), so timelines read "invited bob", not an ID.
	var inv struct {
		DisplayName string `json:"displayname"`
	}
	noErr(t, alice.StateEvent(ctx(t), remote, event.StateMember, bob.UserID.String(), &inv), "bob's invite event on hs1")
	if inv.DisplayName != "bob" {
		t.Errorf("the invite of bob@hs2 has displayname %q, want bob", inv.DisplayName)
	}
	noErr(t, hs1.Stop(), "stop hs1")
	declined(bob, bobTok, remote, "bob (inviting server down)")
}

// TestRemoteJoinCustomContent: custom content in a join body reaches the
// member event also when the join goes through another server.
func TestRemoteJoinCustomContent(t *testing.T) {
	t.Parallel()
	net := startFedNet(t, "hs1.test", "hs2.test")
	alice, bob := net.Daemons["hs1.test"].Register("alice"), net.Daemons["hs2.test"].Register("bob")
	roomID := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	status, body := Raw(t, bob, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID.String())+"?via=hs1.test",
		map[string]any{"foo": "bar", "membership": "leave"})
	if status != 200 {
		t.Fatalf("bob joins through hs1: %d %s", status, body)
	}
	var c map[string]any
	waitFor(t, "bob's join on hs1", func() (map[string]any, bool) {
		c = nil
		err := alice.StateEvent(ctx(t), roomID, event.StateMember, bob.UserID.String(), &c)
		return c, err == nil && c["membership"] == "join"
	})
	if c["foo"] != "bar" {
		t.Errorf("bob's member event on hs1 = %v, want foo=bar", c)
	}
}
