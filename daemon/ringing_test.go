package daemon

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/hearth-chat/hearth/internal/room"
)

// TestStatusListsRingingCalls: the control API's status carries the calls
// ringing for the owner as a "ringing" list (caller, display_name,
// room_id, call_id), even in do-not-disturb (a tray line makes no sound),
// and leaves it out once the caller hangs up.
func TestStatusListsRingingCalls(t *testing.T) {
	d, _, _, _ := modeDaemon(t, t.TempDir(), "federation = off\ndesktop_notifications = off\n")
	ctx := context.Background()
	if err := d.accounts.Create(ctx, "anna", "pw", false); err != nil {
		t.Fatal(err)
	}
	anna, owner := d.accounts.UserID("anna"), d.accounts.UserID(ownerName())
	roomID, err := d.rooms.CreateRoom(ctx, anna, room.Profile{DisplayName: "Anna"}, room.CreateRequest{Preset: "private_chat", Invite: []string{owner}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.rooms.ChangeMembership(ctx, room.MembershipRequest{Sender: owner, Target: owner, RoomID: roomID, Membership: "join"}); err != nil {
		t.Fatal(err)
	}
	settle := func() {
		t.Helper()
		pos, _ := d.rooms.Pos()
		if err := d.push.WaitEvaluated(ctx, pos); err != nil {
			t.Fatal(err)
		}
	}
	settle() // push has recorded where it starts, before the invite
	send := func(typ, txn string) {
		t.Helper()
		content := `{"call_id":"c1","version":"1","party_id":"P","lifetime":60000,"offer":{"type":"offer","sdp":"v=0\r\n"}}`
		if _, err := d.rooms.Send(ctx, room.SendRequest{Sender: anna, Device: "D", RoomID: roomID, Type: typ,
			Content: json.RawMessage(content), TxnID: txn}); err != nil {
			t.Fatal(err)
		}
		settle()
	}
	cfg := d.cfg
	cfg.ClientListen = d.Addr()
	ep, err := Control(cfg)
	if err != nil {
		t.Fatal(err)
	}
	status := func() map[string]json.RawMessage {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+ep.Addr+"/_hearth/v1/status", nil)
		req.Header.Set("Authorization", "Bearer "+ep.Secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st map[string]json.RawMessage
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != 200 {
			t.Fatalf("status: %d %v", resp.StatusCode, err)
		}
		return st
	}

	send("m.call.invite", "i1")
	var ringing []map[string]string
	if err := json.Unmarshal(status()["ringing"], &ringing); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"caller": anna, "display_name": "Anna", "room_id": roomID, "call_id": "c1"}
	if len(ringing) != 1 || len(ringing[0]) != len(want) {
		t.Fatalf("ringing %v, want [%v]", ringing, want)
	}
	for k, v := range want {
		if ringing[0][k] != v {
			t.Fatalf("ringing %v, want [%v]", ringing, want)
		}
	}
	send("m.call.hangup", "h1")
	if r, ok := status()["ringing"]; ok {
		t.Fatalf("after the hangup: ringing %s", r)
	}
}
