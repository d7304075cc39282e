package push

import (
	"encoding/json"
	"slices"
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
				want := encodeRecord(r.Actions, highlight, "main", 7)
				if got := enc.encode(pe, r, 7); string(got) != string(want) {
					t.Errorf("round %d, list %d, highlight %v: shared record %s, want %s", round, i, highlight, got, want)
				}
			}
		}
	}
}

// Both layouts of a log record decode to the same fields: the JSON one
// older files hold and the compact one written since Issue 15.
func TestDecodeRecordBothLayouts(t *testing.T) {
	var actions pushrules.PushActionArray
	if err := json.Unmarshal([]byte(`["notify",{"set_tweak":"sound","value":"default"},{"set_tweak":"highlight"}]`), &actions); err != nil {
		t.Fatal(err)
	}
	old, _ := json.Marshal(record{EventID: "$e", Actions: actions, Highlight: true, Thread: "$root", TS: 1234})
	wantActions, _ := json.Marshal(actions)
	for name, v := range map[string][]byte{"json": old, "compact": encodeRecord(actions, true, "$root", 1234)} {
		r, err := decodeRecord(v, true)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, _ := json.Marshal(r.Actions)
		if !r.Highlight || r.Thread != "$root" || r.TS != 1234 || string(got) != string(wantActions) {
			t.Errorf("%s: decoded %+v (actions %s)", name, r, got)
		}
		if r, err := decodeRecord(v, false); err != nil || !r.Highlight || r.Thread != "$root" || r.TS != 1234 {
			t.Errorf("%s without actions: %+v, %v", name, r, err)
		}
	}
	if len(encodeRecord(actions, true, "main", 1234)) >= len(old)/4 {
		t.Errorf("compact record %d bytes, JSON %d: not smaller", len(encodeRecord(actions, true, "main", 1234)), len(old))
	}
	for _, bad := range [][]byte{{recordCompact}, {recordCompact, 0, 0, 0, 0, 0, 0, 0, 0, 0, 200}} {
		if _, err := decodeRecord(bad, false); err == nil {
			t.Errorf("%x decoded without error", bad)
		}
	}
}

// Every common action list round-trips through its number, and a list
// outside the table through JSON.
func TestRecordCommonActions(t *testing.T) {
	for i, raw := range append(slices.Clone(commonActions), `["notify",{"set_tweak":"sound","value":"bell"}]`, `[]`) {
		var a pushrules.PushActionArray
		if err := json.Unmarshal([]byte(raw), &a); err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(a)
		v := encodeRecord(a, false, "main", 1)
		r, err := decodeRecord(v, true)
		if err != nil {
			t.Fatalf("list %d: %v", i, err)
		}
		got, _ := json.Marshal(r.Actions)
		if string(got) != string(want) {
			t.Errorf("list %d: %s back as %s", i, want, got)
		}
		if i < len(commonActions) && len(v) != 2+8+1+len("main")+1 {
			t.Errorf("list %d (%s) not stored by number: %d bytes", i, raw, len(v))
		}
	}
}
