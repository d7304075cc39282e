package e2e

import (
	"encoding/json"
	"net/url"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// TestFederatedUpgrade: alice of hs1 upgrades a room bob of hs2 is in;
// bob sees the tombstone, follows it to the new room through hs1, and
// hs2 gives him there the room rule he had for the old room.
func TestFederatedUpgrade(t *testing.T) {
	t.Parallel()
	net := startFedNet(t, "hs1.test", "hs2.test")
	hs1, hs2 := net.Daemons["hs1.test"], net.Daemons["hs2.test"]
	alice := hs1.Register("alice")
	bob := hs2.Register("bob")
	old := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Name: "Old", RoomAliasName: "old", Preset: "public_chat", RoomVersion: "10"})
	aliceTok := Quiesce(t, alice, Sync(t, alice, "", "", 0).NextBatch)
	joinOverFederation(t, alice, bob, "#old:hs1.test", old, aliceTok)
	if code, body := Raw(t, bob, "PUT", "/_matrix/client/v3/pushrules/global/room/"+url.PathEscape(string(old)),
		map[string]any{"actions": []string{"dont_notify"}}); code != 200 {
		t.Fatalf("bob's room rule: %d %s", code, body)
	}

	code, body := Raw(t, alice, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(string(old))+"/upgrade", map[string]any{"new_version": "11"})
	if code != 200 {
		t.Fatalf("upgrade: %d %s", code, body)
	}
	var res struct {
		ReplacementRoom id.RoomID `json:"replacement_room"`
	}
	noErr(t, json.Unmarshal(body, &res), "upgrade response")
	newID := res.ReplacementRoom
	waitFor(t, "the tombstone on hs2", func() (string, bool) {
		var tomb struct {
			ReplacementRoom string `json:"replacement_room"`
		}
		code, body := Raw(t, bob, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(string(old))+"/state/m.room.tombstone/", nil)
		if code == 200 {
			json.Unmarshal(body, &tomb)
		}
		return tomb.ReplacementRoom, tomb.ReplacementRoom == string(newID)
	})
	_, err := bob.JoinRoom(ctx(t), string(newID), &mautrix.ReqJoinRoom{Via: []string{"hs1.test"}})
	noErr(t, err, "bob follows the tombstone")
	code, body = Raw(t, bob, "GET", "/_matrix/client/v3/pushrules/global/room/"+url.PathEscape(string(newID)), nil)
	if code != 200 {
		t.Fatalf("bob's rule for the new room: %d %s", code, body)
	}
	// Bob, an ordinary member, can no longer talk in the old room.
	if _, err := bob.SendText(ctx(t), old, "still here?"); err == nil {
		t.Error("bob could still send in the old room after the upgrade")
	}
}
