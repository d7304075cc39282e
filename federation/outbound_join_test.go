package federation

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/hearth-chat/hearth/internal/room"
)

// TestJoinThroughResidentNotSentAgain: bob@hs2 joins alice@hs1's room
// through hs1 (make_join, send_join). hs1 has the join from send_join and
// relays it; hs2 does not send it again, so the first PDU of the room hs1
// gets from hs2 is bob's first message (Complement's
// TestOutboundFederationSend checks every PDU it receives after the join
// is the message).
func TestJoinThroughResidentNotSentAgain(t *testing.T) {
	n := newUKNet()
	hs1, hs2 := newUKServer(t, n, "hs1.test", true), newUKServer(t, n, "hs2.test", true)
	alice := hs1.addUser(t, "alice", "ADEV", false)
	bob := hs2.addUser(t, "bob", "BDEV", false)
	sent := recordSends(t, n, hs1)
	ctx := context.Background()
	roomID, err := hs1.rooms.CreateRoom(ctx, alice, room.Profile{}, room.CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if err := hs2.svc.JoinRoom(ctx, bob, roomID, []string{"hs1.test"}, map[string]any{"membership": "join"}); err != nil {
		t.Fatal(err)
	}
	if _, err := hs2.rooms.Send(ctx, room.SendRequest{Sender: bob, RoomID: roomID, Type: "m.room.message", Device: "BDEV",
		TxnID: "t1", Content: json.RawMessage(`{"msgtype":"m.text","body":"hello"}`)}); err != nil {
		t.Fatal(err)
	}
	var pdus []gjson.Result
	ukWaitFor(t, "bob's message at hs1", func() bool {
		pdus = nil
		for _, txn := range sent() {
			for _, p := range gjson.GetBytes(txn, "pdus").Array() {
				if p.Get("room_id").String() == roomID {
					pdus = append(pdus, p)
				}
			}
		}
		return len(pdus) > 0 && pdus[len(pdus)-1].Get("type").String() == "m.room.message"
	})
	if len(pdus) != 1 {
		t.Errorf("hs2 sent hs1 %d PDUs of the room, want only bob's message: first is %s", len(pdus), pdus[0].Get("type"))
	}
}
