package push

import (
	"encoding/json"
	"testing"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/pushrules"
)

type fakeRoom struct{ members int }

func (r fakeRoom) GetOwnDisplayname() string        { return "Alice" }
func (r fakeRoom) GetMemberCount() int              { return r.members }
func (r fakeRoom) GetEvent(id.EventID) *event.Event { return nil }

func ev(t *testing.T, typ, content string) *event.Event {
	t.Helper()
	var e event.Event
	raw := `{"type":"` + typ + `","sender":"@bob:x","event_id":"$e","room_id":"!r:x","content":` + content + `}`
	if err := json.Unmarshal([]byte(raw), &e); err != nil {
		t.Fatal(err)
	}
	return &e
}

// The defaults parse with a maintained evaluator and behave as the spec
// describes for the common cases.
func TestDefaultsEvaluate(t *testing.T) {
	rs, err := Defaults("@alice:example.org")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, typ, content string
		members            int
		want               string
	}{
		{"message in a group", "m.room.message", `{"msgtype":"m.text","body":"hi"}`, 5, ".m.rule.message"},
		{"message in a DM", "m.room.message", `{"msgtype":"m.text","body":"hi"}`, 2, ".m.rule.room_one_to_one"},
		{"notice", "m.room.message", `{"msgtype":"m.notice","body":"bot"}`, 5, ".m.rule.suppress_notices"},
		{"mention", "m.room.message", `{"msgtype":"m.text","body":"hey","m.mentions":{"user_ids":["@alice:example.org"]}}`, 5, ".m.rule.is_user_mention"},
		{"user name in body", "m.room.message", `{"msgtype":"m.text","body":"ask alice"}`, 5, ".m.rule.contains_user_name"},
		{"reaction", "m.reaction", `{}`, 5, ".m.rule.reaction"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rule := rs.GetMatchingRule(fakeRoom{tc.members}, ev(t, tc.typ, tc.content))
			if rule == nil || rule.RuleID != tc.want {
				t.Fatalf("matched %v, want %s", rule, tc.want)
			}
		})
	}
	var _ pushrules.Room = fakeRoom{}
}
