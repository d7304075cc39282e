package matrix

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/hearth-chat/hearth/internal/room"
)

// TestSyncEncodingMatchesEncodingJSON: the hand-written /sync encoder
// writes exactly the bytes json.Encoder writes for the same response,
// over the shapes a response takes: every section, each state mode,
// omitempty fields present and absent, nil and empty lists, map keys out
// of order, strings and raw content that encoding/json escapes (HTML
// characters, U+2028, control characters, non-ASCII), indented raw JSON,
// and values of types the encoder hands to json.Marshal.
func TestSyncEncodingMatchesEncodingJSON(t *testing.T) {
	sk, empty := "@b:x", ""
	ev := func(body string, unsigned map[string]any) room.ClientEvent {
		return room.ClientEvent{Content: json.RawMessage(body), EventID: "$e<1>&", OriginServerTS: 1700000000123,
			Sender: "@a:x", Type: "m.room.message", Unsigned: unsigned}
	}
	full := &syncResponse{NextBatch: "s12_3",
		Rooms: syncRooms{
			Join: map[string]joinedRoom{
				"!z:x": {
					Timeline: timeline{Events: []any{
						ev(`{"body":"a <b> & \u2028 c","msgtype":"m.text"}`, map[string]any{"age": int64(5), "transaction_id": "t\n1"}),
						ev("{\n  \"body\": \"spaced\",\t\"n\": [1, 2.5e3, true, null]\n}", nil),
						&room.ClientEvent{Content: json.RawMessage(`{}`), EventID: "$s", RoomID: "!z:x", Sender: "@é:x",
							StateKey: &empty, Type: "m.room.create", Redacts: "$r", Unsigned: map[string]any{}},
						map[string]any{"content": map[string]any{"body": "projected"}, "z": 1.5, "a": []any{"x", nil, false}},
						json.RawMessage(`{"type":"raw"}`),
					}, Limited: true, PrevBatch: "p_1"},
					roomState:                 stateMode{}.section([]any{room.ClientEvent{Content: json.RawMessage(`{"membership":"join"}`), StateKey: &sk, Type: "m.room.member"}}),
					AccountData:               eventList{Events: []json.RawMessage{json.RawMessage(`{"type":"m.tag","content":{"tags":{}}}`)}},
					Ephemeral:                 eventList{Events: []json.RawMessage{}},
					Summary:                   map[string]any{"m.joined_member_count": 2, "m.heroes": []string{"@b:x", "@a:x"}, "m.invited_member_count": int64(0)},
					UnreadNotifications:       map[string]int{"notification_count": 3, "highlight_count": 1},
					UnreadThreadNotifications: map[string]map[string]int{"$t2": {"notification_count": 1}, "$t1": {"highlight_count": 0}},
				},
				"!a:x": {Timeline: timeline{Events: []any{}}, roomState: stateMode{after: true, afterUnstable: true}.section([]any{}),
					Summary: map[string]any{}, UnreadNotifications: map[string]int{}},
				"!n:x": {Timeline: timeline{}, roomState: stateMode{afterUnstable: true}.section(nil)},
			},
			Invite: map[string]invitedRoom{"!i:x": {InviteState: eventList{Events: []json.RawMessage{json.RawMessage(` {"a" : 1} `)}}}, "!h:x": {}},
			Leave: map[string]leftRoom{"!l:x": {Timeline: timeline{Events: []any{ev(`{"body":"bye"}`, nil)}},
				roomState: stateMode{after: true}.section([]any{}), AccountData: eventList{Events: []json.RawMessage{}}}},
			Knock: map[string]any{"!k:x": map[string]any{"knock_state": eventList{Events: []json.RawMessage{json.RawMessage(`{"x":"<"}`)}}}},
		},
		Presence:    eventList{Events: []json.RawMessage{json.RawMessage(`{"type":"m.presence","sender":"@b:x"}`)}},
		ToDevice:    eventList{Events: []json.RawMessage{}},
		DeviceLists: map[string]any{"left": []string{}, "changed": []string{"@b:x", "@c\"\\:x"}},
		OTKCounts:   map[string]int{"signed_curve25519": 50, "curve25519": 0},
	}
	bare := &syncResponse{Rooms: syncRooms{Join: map[string]joinedRoom{}, Invite: map[string]invitedRoom{},
		Leave: map[string]leftRoom{}, Knock: map[string]any{}}, FallbackKeyTypes: []string{"signed_curve25519"}}
	for name, resp := range map[string]*syncResponse{"full": full, "bare": bare, "zero": {}} {
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(resp); err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := encodeSync(syncEncoder{b: &got}, resp); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.String() != want.String() {
			t.Errorf("%s:\n got %s\nwant %s", name, got.String(), want.String())
		}
		w := httptest.NewRecorder()
		writeSync(w, resp)
		if w.Body.String() != want.String() || w.Code != 200 || w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s: writeSync wrote %d %q %s", name, w.Code, w.Header().Get("Content-Type"), w.Body.String())
		}
	}
	// Invalid raw JSON fails as it does in encoding/json, rather than
	// writing a broken body.
	bad := &syncResponse{Presence: eventList{Events: []json.RawMessage{json.RawMessage(`{"a":`)}}}
	if err := encodeSync(syncEncoder{b: new(bytes.Buffer)}, bad); err == nil {
		t.Error("invalid raw event encoded without error")
	}
}

// TestSyncEncoderKnowsEveryField: the encoder writes the response's
// fields by name, so a field added to one of these types must be added
// to it too (and to the test above); this fails until it is.
func TestSyncEncoderKnowsEveryField(t *testing.T) {
	for _, c := range []struct {
		v any
		n int
	}{{syncResponse{}, 8}, {syncRooms{}, 4}, {joinedRoom{}, 7}, {leftRoom{}, 3}, {invitedRoom{}, 1},
		{timeline{}, 3}, {roomState{}, 3}, {stateList{}, 1}, {eventList{}, 1}, {room.ClientEvent{}, 9}} {
		got := 0
		for _, f := range reflect.VisibleFields(reflect.TypeOf(c.v)) {
			if (f.IsExported() || f.Anonymous) && len(f.Index) == 1 { // what encoding/json writes: unexported fields are not on the wire
				got++
			}
		}
		if got != c.n {
			t.Errorf("%T has %d fields, the /sync encoder knows %d", c.v, got, c.n)
		}
	}
}
