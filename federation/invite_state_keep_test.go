package federation

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"
)

// TestKeepRoomStateOnlyEvents: of the invite_room_state or
// knock_room_state another server sends, only state events (objects with
// a type and a state key) are kept for the invitee's clients; anything
// else in the list (a number, a string, null, an event without a state
// key) is dropped, as the client API's stripped state holds events only.
func TestKeepRoomStateOnlyEvents(t *testing.T) {
	_, key := newEd25519(t)
	sk := "@bob:hs2.test"
	eb := gomatrixserverlib.MustGetRoomVersion("10").NewEventBuilderFromProtoEvent(&gomatrixserverlib.ProtoEvent{
		SenderID: "@alice:hs1.test", RoomID: "!r:hs1.test", Type: "m.room.member", StateKey: &sk,
		Content: spec.RawJSON(`{"membership":"invite"}`), PrevEvents: []string{}, AuthEvents: []string{}, Depth: 1})
	pdu, err := eb.Build(time.Now(), "hs1.test", "ed25519:k", key)
	if err != nil {
		t.Fatal(err)
	}
	state := []json.RawMessage{
		json.RawMessage(`{"type":"m.room.name","state_key":"","sender":"@alice:hs1.test","content":{"name":"Tea"}}`),
		json.RawMessage(`123`), json.RawMessage(`"x"`), json.RawMessage(`null`),
		json.RawMessage(`{"type":"m.room.topic","content":{}}`),
	}
	for _, field := range []string{"invite_room_state", "knock_room_state"} {
		if err := keepRoomState(pdu, field, state); err != nil {
			t.Fatal(err)
		}
		got := gjson.GetBytes(pdu.JSON(), "unsigned."+field).Array()
		if len(got) != 1 || got[0].Get("type").String() != "m.room.name" {
			t.Errorf("%s kept %s, want only the m.room.name event", field, gjson.GetBytes(pdu.JSON(), "unsigned."+field).Raw)
		}
	}
}
