package room

import (
	"encoding/json"
	"testing"
)

// TestJSONMember: the room list's JSON reader finds the same top-level
// string as encoding/json, skipping nested objects, arrays, escaped
// strings and literals, and gives up (nil) on what it cannot read.
func TestJSONMember(t *testing.T) {
	for _, js := range []string{
		`{"type":"m.room.message","content":{"type":"inner","body":"a \"quoted\" }{ ] text"}}`,
		`{"a":[1,{"type":"no"},"]"],"b":null,"c":true,"d":-1.5e3,"type":"m.sticker"}`,
		` { "content" : { "type" : "m.space" } , "type" : "m.room.create" } `,
		`{"type":"esc\u0061ped"}`,
		`{"content":{},"type":"m.room.create"}`,
		`{"content":{"type":null},"type":"m.room.create"}`,
		`{"notype":1}`,
		`{"type":`,
		`[1,2]`,
		`{"a":"unterminated`,
	} {
		var want struct {
			Type    *string `json:"type"`
			Content struct {
				Type *string `json:"type"`
			} `json:"content"`
		}
		valid := json.Unmarshal([]byte(js), &want) == nil
		got, ok := jsonString(jsonMember([]byte(js), "type"))
		switch {
		case !valid && ok:
			t.Errorf("%s: read %q from invalid JSON", js, got)
		case valid && want.Type != nil && (!ok || got != *want.Type):
			t.Errorf("%s: got %q %v, want %q", js, got, ok, *want.Type)
		case valid && want.Type == nil && ok:
			t.Errorf("%s: got %q, want none", js, got)
		}
		if valid {
			ct, ok := jsonString(jsonMember(jsonMember([]byte(js), "content"), "type"))
			if (want.Content.Type != nil) != ok || (ok && ct != *want.Content.Type) {
				t.Errorf("%s: content.type %q %v, want %v", js, ct, ok, want.Content.Type)
			}
		}
	}
}
