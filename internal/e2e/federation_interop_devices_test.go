//go:build goolm

package e2e

import (
	"slices"
	"testing"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// TestInteropDeviceListOnJoinReachesStrictServer: when dave@hs1, whose
// client uploaded device keys, joins a room the strict peer is in, the
// peer gets m.device_list_update for dave's device (Server-Server API
// §"Device Management"; Complement's
// TestDeviceListsUpdateOverFederationOnRoomJoin), and the keys in it
// carry "unsigned" as an object, never missing (which another server
// relays as null, and the Rust crypto SDK then drops the device).
func TestInteropDeviceListOnJoinReachesStrictServer(t *testing.T) {
	t.Parallel()
	peer, hs1 := startWithPeer(t, true)
	alice := hs1.Register("alice")
	dave := hs1.Register("dave")
	room := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	peer.join("mallory", room.String())
	newCryptoUser(t, dave, &roomState{room: room}) // uploads dave's device keys

	_, err := dave.JoinRoomByID(ctx(t), room)
	noErr(t, err, "dave joins")
	edu := waitFor(t, "dave's device announced to the peer", func() (gjson.Result, bool) {
		edus := peer.sent("edus", func(e gjson.Result) bool {
			c := e.Get("content")
			return e.Get("edu_type").String() == "m.device_list_update" && c.Get("user_id").String() == dave.UserID.String() &&
				c.Get("device_id").String() == dave.DeviceID.String()
		})
		if len(edus) == 0 {
			return gjson.Result{}, false
		}
		return edus[0], true
	})
	keys := edu.Get("content.keys")
	if keys.Get("device_id").String() != dave.DeviceID.String() || !keys.Get("unsigned").IsObject() {
		t.Errorf("dave's keys in the EDU: %s", keys.Raw)
	}
	if r := peer.refusals(); len(r) != 0 {
		t.Errorf("the strict peer refused PDUs: %+v", r)
	}
}

// TestInteropDeviceListsChangedOnJoinOverFederation: joiner@hs1 (with
// device keys) joins joinee@hs2's encrypted room over federation; each
// one's next /sync lists the other in device_lists.changed, and the
// joinee's /keys/query then finds the joiner's device (Complement's
// TestUserAppearsInChangedDeviceListOnJoinOverFederation).
func TestInteropDeviceListsChangedOnJoinOverFederation(t *testing.T) {
	t.Parallel()
	net := startFedNet(t, "hs1.test", "hs2.test")
	joiner := net.Daemons["hs1.test"].Register("joiner")
	joinee := net.Daemons["hs2.test"].Register("joinee")
	room := CreateRoom(t, joinee, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomAliasName: "e2ee",
		InitialState: []*event.Event{{Type: event.StateEncryption, Content: event.Content{
			Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}}}}})
	state := &roomState{room: room}
	newCryptoUser(t, joiner, state)
	newCryptoUser(t, joinee, state)
	joineeTok := Quiesce(t, joinee, Sync(t, joinee, "", "", 0).NextBatch)
	joinerTok := Quiesce(t, joiner, Sync(t, joiner, "", "", 0).NextBatch)

	_, err := joiner.JoinRoom(ctx(t), "#e2ee:hs2.test", nil)
	noErr(t, err, "joiner@hs1 joins #e2ee:hs2.test")
	SyncUntil(t, joinee, joineeTok, "", "joiner in the joinee's device_lists.changed", func(r *mautrix.RespSync) bool {
		return slices.Contains(r.DeviceLists.Changed, joiner.UserID)
	})
	q, err := joinee.QueryKeys(ctx(t), &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{joiner.UserID: {}}})
	noErr(t, err, "the joinee queries the joiner's keys")
	if q.DeviceKeys[joiner.UserID][joiner.DeviceID].DeviceID != joiner.DeviceID {
		t.Fatalf("the joiner's device through hs2: %+v, failures %v", q.DeviceKeys[joiner.UserID], q.Failures)
	}
	SyncUntil(t, joiner, joinerTok, "", "joinee in the joiner's device_lists.changed", func(r *mautrix.RespSync) bool {
		return slices.Contains(r.DeviceLists.Changed, joinee.UserID)
	})
}
