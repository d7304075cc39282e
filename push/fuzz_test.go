package push

import (
	"encoding/json"
	"errors"
	"testing"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/pushrules"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// FuzzDecodeRule: whatever the body, the push rule decoder returns a rule
// or a Matrix error, never panics, and an accepted rule evaluates (with
// mautrix's evaluator, whose Should() assumes well-typed tweaks) without
// panicking either.
func FuzzDecodeRule(f *testing.F) {
	for _, seed := range []string{
		`{"actions":["notify",{"set_tweak":"sound","value":"default"},{"set_tweak":"highlight"}]}`,
		`{"conditions":[{"kind":"event_match","key":"content.body","pattern":"*cake*"}],"actions":["notify"]}`,
		`{"conditions":[{"kind":"room_member_count","is":">=2"},{"kind":"contains_display_name"}],"actions":[]}`,
		`{"conditions":[{"kind":"event_property_is","key":"content.m\\.mentions.room","value":true},{"kind":"sender_notification_permission","key":"room"}],"actions":["notify"]}`,
		`{"pattern":"alice","actions":["dont_notify"]}`,
		`{"actions":[{"set_tweak":"sound","value":1}]}`,
		`{"actions":[{"set_tweak":"highlight","value":"x"}]}`,
		`{"conditions":[{"kind":"event_property_contains","key":"content.tags","value":[1]}],"actions":[]}`,
		`{"actions":[`, `[]`, `null`, `{"actions":null}`,
	} {
		for _, kind := range []string{"override", "content", "underride", "room", "nope"} {
			f.Add(kind, "rule", []byte(seed))
		}
	}
	ev := &event.Event{}
	json.Unmarshal([]byte(`{"type":"m.room.message","sender":"@bob:x","room_id":"!r:x","event_id":"$e",
		"content":{"msgtype":"m.text","body":"alice likes cake","m.mentions":{"room":true}}}`), ev)
	room := &evalRoom{displayName: "alice", members: 3, pl: &event.PowerLevelsEventContent{}}
	f.Fuzz(func(t *testing.T, kind, ruleID string, body []byte) {
		rule, err := DecodeRule(kind, ruleID, body)
		if err != nil {
			var me *matrixerr.Error
			if !errors.As(err, &me) || me.Status != 400 {
				t.Fatalf("error %v is not a 400 Matrix error", err)
			}
			return
		}
		rs := &pushrules.PushRuleset{}
		switch kind {
		case "override":
			rs.Override = pushrules.PushRuleArray{rule}
		case "content":
			rs.Content = pushrules.PushRuleArray{rule}
		case "underride":
			rs.Underride = pushrules.PushRuleArray{rule}
		case "room":
			rs.Room = pushrules.PushRuleArray{rule}.SetTypeAndMap(pushrules.RoomRule)
		case "sender":
			rs.Sender = pushrules.PushRuleArray{rule}.SetTypeAndMap(pushrules.SenderRule)
		default:
			t.Fatalf("kind %q was accepted", kind)
		}
		rs.GetActions(room, ev).Should()
		if _, err := json.Marshal(rule); err != nil {
			t.Fatalf("accepted rule does not encode: %v", err)
		}
	})
}
