package push

import (
	"encoding/json"
	"testing"

	"maunium.net/go/mautrix/pushrules"

	"github.com/hearth-chat/hearth/internal/room"
)

// The log records one event's recipients share (recordEncoder) must be
// byte for byte what encoding each recipient's record gives, and actions
// that differ in any part (a tweak's value, its type, a string that
// could pass for a separator) must never share one.
func TestRecordEncoderSameBytesAsPerRecipient(t *testing.T) {
	pe := &room.PushEvent{Event: room.ClientEvent{EventID: "$e"}, ThreadRoot: "main"}
	act := func(raw string) pushrules.PushActionArray {
		t.Helper()
		var a pushrules.PushActionArray
		if err := json.Unmarshal([]byte(raw), &a); err != nil {
			t.Fatal(err)
		}
		return a
	}
	lists := []string{
		`["notify"]`,
		`["notify",{"set_tweak":"sound","value":"default"}]`,
		`["notify",{"set_tweak":"sound","value":"ring"}]`,
		`["notify",{"set_tweak":"sound","value":"default"},{"set_tweak":"highlight"}]`,
		`["notify",{"set_tweak":"highlight","value":false}]`,
		`["notify",{"set_tweak":"highlight","value":true}]`,
		`["notify",{"set_tweak":"x","value":"1"}]`,
		`["notify",{"set_tweak":"x","value":1}]`,
		`["notify",{"set_tweak":"x","value":"a1:b"}]`,
		`["notify",{"set_tweak":"x","value":"a"},{"set_tweak":"1:b"}]`,
		`["notify",{"set_tweak":"x","value":{"nested":true}}]`,
		`["notify",{"set_tweak":"x","value":{"nested":false}}]`,
	}
	enc := recordEncoder{}
	for round := range 2 { // the second round reads what the first left
		for i, raw := range lists {
			for _, highlight := range []bool{false, true} {
				r := Result{UserID: "@u:push.test", Actions: act(raw), Notify: true, Highlight: highlight}
				want, _ := json.Marshal(record{EventID: "$e", Actions: r.Actions, Highlight: highlight, Thread: "main", TS: 7})
				if got := enc.encode(pe, r, 7); string(got) != string(want) {
					t.Errorf("round %d, list %d, highlight %v: shared record %s, want %s", round, i, highlight, got, want)
				}
			}
		}
	}
}
