package federation

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/hearth-chat/hearth/internal/room"
)

// TestServerACLOnRequests: once a room's m.room.server_acl denies hs2,
// hs1 answers hs2's make_join and state requests for it with 403
// M_FORBIDDEN, while hs3 is still served.
func TestServerACLOnRequests(t *testing.T) {
	n := newUKNet()
	hs1 := newUKServer(t, n, "hs1.test", false)
	hs2, hs3 := newUKServer(t, n, "hs2.test", false), newUKServer(t, n, "hs3.test", false)
	alice := hs1.addUser(t, "alice", "ADEV", false)
	ctx := context.Background()
	roomID, err := hs1.rooms.CreateRoom(ctx, alice, room.Profile{}, room.CreateRequest{Preset: "public_chat", RoomVersion: "10"})
	if err != nil {
		t.Fatal(err)
	}
	makeJoin := func(from *ukServer, user string) (int, string) {
		code, errcode, _ := from.call(t, "GET", "hs1.test",
			"/_matrix/federation/v1/make_join/"+url.PathEscape(roomID)+"/"+url.PathEscape(user)+"?ver=10", nil)
		return code, errcode
	}
	if code, errcode := makeJoin(hs2, "@bob:hs2.test"); code != http.StatusOK {
		t.Fatalf("make_join from hs2 before the ACL: %d %s", code, errcode)
	}
	sk := ""
	if _, err := hs1.rooms.Send(ctx, room.SendRequest{Sender: alice, RoomID: roomID, Type: "m.room.server_acl", StateKey: &sk,
		Content: json.RawMessage(`{"allow":["*"],"deny":["*2.test"]}`)}); err != nil {
		t.Fatal(err)
	}
	if code, errcode := makeJoin(hs2, "@bob:hs2.test"); code != http.StatusForbidden || errcode != "M_FORBIDDEN" {
		t.Errorf("make_join from hs2 after the ACL: %d %s, want 403 M_FORBIDDEN", code, errcode)
	}
	if code, errcode, _ := hs2.call(t, "GET", "hs1.test", "/_matrix/federation/v1/backfill/"+url.PathEscape(roomID)+"?v=x&limit=1", nil); code != http.StatusForbidden || errcode != "M_FORBIDDEN" {
		t.Errorf("backfill from hs2 after the ACL: %d %s, want 403 M_FORBIDDEN", code, errcode)
	}
	if code, errcode := makeJoin(hs3, "@carol:hs3.test"); code != http.StatusOK {
		t.Errorf("make_join from hs3 after the ACL: %d %s, want 200", code, errcode)
	}
	if hs1.rooms.ServerAllowed(roomID, "hs2.test:8448") || !hs1.rooms.ServerAllowed(roomID, "hs3.test") || !hs1.rooms.ServerAllowed("!unknown:hs1.test", "hs2.test") {
		t.Errorf("ServerAllowed disagrees with the ACL")
	}
}

// TestServerACLOnTransactions: after the room's ACL denies hs2, a
// transaction from hs2 gets an error for its PDU, which hs1 does not
// store, and its typing EDU for the room changes nothing;
// before the ACL the same EDU applies.
func TestServerACLOnTransactions(t *testing.T) {
	n := newUKNet()
	hs1, hs2, alice, bob, roomID := sharedRoom(t, n, false)
	ctx := context.Background()
	// A message of bob's, signed by hs2, for hs1's inbox.
	msgID, err := hs2.rooms.Send(ctx, room.SendRequest{Sender: bob, Device: "BDEV", RoomID: roomID, Type: "m.room.message",
		Content: json.RawMessage(`{"msgtype":"m.text","body":"let me in"}`), TxnID: "t1"})
	if err != nil {
		t.Fatal(err)
	}
	pdu, err := hs2.rooms.PDU("hs2.test", roomID, msgID)
	if err != nil {
		t.Fatal(err)
	}
	edus := func(typing bool) []map[string]any {
		return []map[string]any{
			{"edu_type": "m.typing", "content": map[string]any{"room_id": roomID, "user_id": bob, "typing": typing}},
		}
	}
	// bobTyping reports whether alice's initial sync on hs1 shows bob typing.
	bobTyping := func() bool {
		res, err := hs1.rooms.Sync(room.SyncRequest{UserID: alice, Device: "ADEV", Now: 1 << 62, NowEph: 1 << 62})
		if err != nil {
			t.Fatal(err)
		}
		for _, raw := range res.Join[roomID].Ephemeral {
			var ev struct {
				Type    string `json:"type"`
				Content struct {
					UserIDs []string `json:"user_ids"`
				} `json:"content"`
			}
			json.Unmarshal(raw, &ev)
			if ev.Type == "m.typing" && len(ev.Content.UserIDs) == 1 && ev.Content.UserIDs[0] == bob {
				return true
			}
		}
		return false
	}
	send := func(txnID string, pdus []json.RawMessage, edus []map[string]any) map[string]any {
		code, errcode, res := hs2.call(t, "PUT", "hs1.test", "/_matrix/federation/v1/send/"+txnID,
			map[string]any{"origin": "hs2.test", "origin_server_ts": 1, "pdus": pdus, "edus": edus})
		if code != http.StatusOK {
			t.Fatalf("send %s: %d %s", txnID, code, errcode)
		}
		return res
	}

	send("before", []json.RawMessage{}, edus(true))
	if !bobTyping() {
		t.Fatal("bob's typing before the ACL did not apply")
	}
	send("stop", []json.RawMessage{}, edus(false))
	sk := ""
	if _, err := hs1.rooms.Send(ctx, room.SendRequest{Sender: alice, RoomID: roomID, Type: "m.room.server_acl", StateKey: &sk,
		Content: json.RawMessage(`{"allow":["*"],"deny":["hs2.test"]}`)}); err != nil {
		t.Fatal(err)
	}
	res := send("after", []json.RawMessage{pdu.JSON()}, edus(true))
	result, _ := res["pdus"].(map[string]any)[msgID].(map[string]any)
	if errText, _ := result["error"].(string); errText == "" {
		t.Errorf("PDU result from a denied server: %v, want an error", res)
	}
	if _, err := hs1.rooms.PDU("hs1.test", roomID, msgID); err == nil {
		t.Error("hs1 stored a PDU from a server its ACL denies")
	}
	if bobTyping() {
		t.Error("a typing EDU from a denied server applied")
	}
}
