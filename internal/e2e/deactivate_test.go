package e2e

import (
	"testing"

	"maunium.net/go/mautrix"
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
