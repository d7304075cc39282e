package e2e

import (
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// TestFederatedDeactivation: bob of hs2 is joined to one of alice's rooms
// on hs1 and invited to another; when he deactivates his account, hs1
// sees him leave the first and decline the second, and hs2 answers his
// password with M_USER_DEACTIVATED.
func TestFederatedDeactivation(t *testing.T) {
	t.Parallel()
	net := startFedNet(t, "hs1.test", "hs2.test")
	hs1, hs2 := net.Daemons["hs1.test"], net.Daemons["hs2.test"]
	alice := hs1.Register("alice")
	bob := hs2.Register("bob")
	joined := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Name: "Joined", RoomAliasName: "joined", Preset: "public_chat"})
	invited := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Name: "Invited", Preset: "private_chat"})
	aliceTok := Quiesce(t, alice, Sync(t, alice, "", "", 0).NextBatch)
	joinOverFederation(t, alice, bob, "#joined:hs1.test", joined, aliceTok)
	bobTok := Quiesce(t, bob, Sync(t, bob, "", "", 0).NextBatch)
	_, err := alice.InviteUser(ctx(t), invited, &mautrix.ReqInviteUser{UserID: bob.UserID})
	noErr(t, err, "alice invites bob")
	SyncUntil(t, bob, bobTok, "", "bob's invite on hs2", func(r *mautrix.RespSync) bool { return r.Rooms.Invite[invited] != nil })

	code, body := Raw(t, bob, "POST", "/_matrix/client/v3/account/deactivate", map[string]any{
		"auth": map[string]any{"type": "m.login.password", "user": bob.UserID.String(), "password": Password("bob")}})
	if code != 200 {
		t.Fatalf("deactivate: %d %s", code, body)
	}
	for _, roomID := range []id.RoomID{joined, invited} {
		waitFor(t, "bob gone from "+string(roomID)+" as hs1 sees it", func() (map[id.UserID]string, bool) {
			m := memberships(t, alice, roomID)
			return m, m[bob.UserID] == "leave"
		})
	}
	_, err = hs2.Client("", "").Login(ctx(t), &mautrix.ReqLogin{Type: mautrix.AuthTypePassword,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: bob.UserID.String()}, Password: Password("bob")})
	wantMatrixErr(t, err, 403, "M_USER_DEACTIVATED", "bob logs in after deactivating")
}

// TestFederatedErasure: alice of hs1 deactivates with erase; bob of hs2,
// whose server was not in the room then, joins afterwards and pages back:
// hs1 serves hs2 alice's message redacted, while dave, on hs1 and in the
// room all along, still reads it.
func TestFederatedErasure(t *testing.T) {
	t.Parallel()
	net := startFedNet(t, "hs1.test", "hs2.test")
	hs1, hs2 := net.Daemons["hs1.test"], net.Daemons["hs2.test"]
	alice, dave := hs1.Register("alice"), hs1.Register("dave")
	bob := hs2.Register("bob")
	roomID := CreateRoom(t, dave, &mautrix.ReqCreateRoom{Name: "Erasure", RoomAliasName: "erasure", Preset: "public_chat"})
	Join(t, alice, roomID)
	secret := SendText(t, alice, roomID, "alice's secret")
	for range 3 {
		SendText(t, dave, roomID, "dave talks on")
	}
	code, resp := Raw(t, alice, "POST", "/_matrix/client/v3/account/deactivate", map[string]any{"erase": true,
		"auth": map[string]any{"type": "m.login.password", "user": alice.UserID.String(), "password": Password("alice")}})
	if code != 200 {
		t.Fatalf("deactivate: %d %s", code, resp)
	}
	_, err := bob.JoinRoom(ctx(t), "#erasure:hs1.test", nil)
	noErr(t, err, "bob joins over federation")

	find := func(c *mautrix.Client) *event.Event {
		for _, ev := range History(t, c, roomID, "", 10) {
			if ev.ID == secret {
				return ev
			}
		}
		return nil
	}
	if ev := find(dave); body(ev) != "alice's secret" {
		t.Errorf("dave, in the room at the erasure, reads %v", ev)
	}
	ev := find(bob)
	if ev == nil {
		t.Fatal("bob's history on hs2 lacks alice's message altogether")
	}
	if len(ev.Content.Raw) != 0 {
		t.Errorf("bob, whose server joined after the erasure, reads %v", ev.Content.Raw)
	}
}
