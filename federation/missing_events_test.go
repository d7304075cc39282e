package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/hearth-chat/hearth/internal/room"
)

// TestGetMissingEventsServed: POST /get_missing_events answers with the
// events between earliest_events and latest_events (both left out),
// walking prev_events back from latest, keeping the nearest ones when
// there are more than limit, honouring min_depth, oldest first
// (Server-Server API §"Retrieving missing events"); a limit above the
// server's cap is cut to the cap, not to the default of 10.
func TestGetMissingEventsServed(t *testing.T) {
	n := newUKNet()
	hs1, hs2, alice, _, roomID := sharedRoom(t, n, false)
	ctx := context.Background()
	var ids []string
	for i := range 14 {
		id, err := hs1.rooms.Send(ctx, room.SendRequest{Sender: alice, RoomID: roomID, Type: "m.room.message",
			TxnID: fmt.Sprint("t", i), Device: "ADEV", Content: json.RawMessage(fmt.Sprintf(`{"msgtype":"m.text","body":"m%d"}`, i))})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	ask := func(body map[string]any) []string {
		t.Helper()
		status, errcode, out := hs2.call(t, "POST", "hs1.test", "/_matrix/federation/v1/get_missing_events/"+roomID, body)
		if status != 200 {
			t.Fatalf("get_missing_events %v: %d %s", body, status, errcode)
		}
		b, _ := json.Marshal(out)
		var got []string
		for _, ev := range gjson.GetBytes(b, "events").Array() {
			got = append(got, ev.Get("content.body").String())
		}
		return got
	}
	bodies := func(from, to int) []string {
		var out []string
		for i := from; i <= to; i++ {
			out = append(out, fmt.Sprint("m", i))
		}
		return out
	}
	between := map[string]any{"earliest_events": []string{ids[0]}, "latest_events": []string{ids[13]}}
	if got := ask(between); !slices.Equal(got, bodies(3, 12)) {
		t.Errorf("default limit: %v, want the 10 nearest to latest, oldest first", got)
	}
	between["limit"] = 3
	if got := ask(between); !slices.Equal(got, bodies(10, 12)) {
		t.Errorf("limit 3: %v, want m10..m12", got)
	}
	between["limit"] = 1000
	if got := ask(between); !slices.Equal(got, bodies(1, 12)) {
		t.Errorf("limit 1000: %v, want m1..m12 (all between, not cut to 10)", got)
	}
	depth := gjson.GetBytes(eventJSON(t, hs1, ids[9]), "depth").Int()
	between["min_depth"] = depth
	if got := ask(between); !slices.Equal(got, bodies(9, 12)) {
		t.Errorf("min_depth of m9: %v, want m9..m12", got)
	}
}

// eventJSON is an event of hs1 as it serves it over federation.
func eventJSON(t *testing.T, s *ukServer, eventID string) []byte {
	t.Helper()
	_, _, out := s.call(t, "GET", s.name, "/_matrix/federation/v1/event/"+eventID, nil)
	b, _ := json.Marshal(out)
	return []byte(gjson.GetBytes(b, "pdus.0").Raw)
}

// TestGetMissingEventsRedactsWhatServerMayNotSee: in a room whose
// history is for joined members only, a server that joined later asks
// get_missing_events across what was said before it came: those events
// come as redacted copies (type and place in the DAG, no content), not
// as holes, nor in full.
func TestGetMissingEventsRedactsWhatServerMayNotSee(t *testing.T) {
	n := newUKNet()
	hs1, hs2 := newUKServer(t, n, "hs1.test", false), newUKServer(t, n, "hs2.test", false)
	alice := hs1.addUser(t, "alice", "ADEV", false)
	bob := hs2.addUser(t, "bob", "BDEV", false)
	ctx := context.Background()
	roomID, err := hs1.rooms.CreateRoom(ctx, alice, room.Profile{}, room.CreateRequest{Preset: "public_chat",
		InitialState: []room.StateEvent{{Type: "m.room.history_visibility", Content: json.RawMessage(`{"history_visibility":"joined"}`)}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hs1.rooms.Send(ctx, room.SendRequest{Sender: alice, RoomID: roomID, Type: "m.room.message", Device: "ADEV",
		TxnID: "s", Content: json.RawMessage(`{"msgtype":"m.text","body":"before bob"}`)}); err != nil {
		t.Fatal(err)
	}
	if err := hs2.svc.JoinRoom(ctx, bob, roomID, []string{"hs1.test"}, map[string]any{"membership": "join"}); err != nil {
		t.Fatal(err)
	}
	create := hs1.rooms.CurrentStatePDU(roomID, "m.room.create", "").EventID()
	join := hs1.rooms.CurrentStatePDU(roomID, "m.room.member", bob).EventID()
	_, _, out := hs2.call(t, "POST", "hs1.test", "/_matrix/federation/v1/get_missing_events/"+roomID,
		map[string]any{"earliest_events": []string{create}, "latest_events": []string{join}, "limit": 20})
	b, _ := json.Marshal(out)
	var found gjson.Result
	for _, ev := range gjson.GetBytes(b, "events").Array() {
		if ev.Get("type").String() == "m.room.message" {
			found = ev
		}
	}
	if !found.Exists() {
		t.Fatalf("the message from before bob joined is missing from get_missing_events: %s", b)
	}
	if found.Get("content.body").Exists() {
		t.Errorf("hs2 was given what was said before it joined a joined-only room: %s", found.Raw)
	}
}
