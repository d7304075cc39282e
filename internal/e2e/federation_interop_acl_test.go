package e2e

import (
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
)

// TestInteropACLReachesDeniedServer: alice@hs1 sets a server ACL that
// denies hs2, where bob is in the room; the ACL event itself still
// reaches hs2, so bob's server knows it is denied (Complement's TestACLs
// waits for it in bob's /sync); alice's next message does not.
func TestInteropACLReachesDeniedServer(t *testing.T) {
	t.Parallel()
	net := startFedNet(t, "hs1.test", "hs2.test")
	alice := net.Daemons["hs1.test"].Register("alice")
	bob := net.Daemons["hs2.test"].Register("bob")
	roomID := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomAliasName: "acl"})
	aliceTok := Quiesce(t, alice, Sync(t, alice, "", "", 0).NextBatch)
	joinOverFederation(t, alice, bob, "#acl:hs1.test", roomID, aliceTok)
	bobTok := Quiesce(t, bob, Sync(t, bob, "", "", 0).NextBatch)

	resp, err := alice.SendStateEvent(ctx(t), roomID, event.StateServerACL, "", map[string]any{
		"allow": []string{"*"}, "allow_ip_literals": true, "deny": []string{"hs2.test"}})
	noErr(t, err, "alice denies hs2")
	SyncUntil(t, bob, bobTok, "", "the ACL event on hs2", func(r *mautrix.RespSync) bool {
		return TimelineHas(r, roomID, resp.EventID)
	})
}
