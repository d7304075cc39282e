package push

import (
	"encoding/json"
	"fmt"
	"testing"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/pushrules"
)

// The evaluator's shared matcher (one per event, condition results reused
// across recipients) must give exactly the actions of mautrix's own
// per-user PushRuleset.GetActions: for users with default rules, with
// changed defaults and their own rules of every kind, with display-name
// mentions, user mentions, room mentions with and without the power, in
// rooms of different sizes. One matcher serves all users of an event, in
// changing orders, as in Evaluate.
func TestMatcherSameActionsAsPerUser(t *testing.T) {
	e := openEnv(t, t.TempDir())
	defer e.db.Close()
	r := NewRules(e.db)
	ctx := t.Context()
	alice, bob, carol, dave := user("alice"), user("bob"), user("carol"), user("dave")
	const roomA, roomB = "!a:push.test", "!b:push.test"
	act := func(raw string) pushrules.PushActionArray {
		var a pushrules.PushActionArray
		if err := json.Unmarshal([]byte(raw), &a); err != nil {
			t.Fatal(err)
		}
		return a
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// bob: own rules of every kind and a changed default.
	must(r.Put(ctx, bob, &pushrules.PushRule{Type: pushrules.OverrideRule, RuleID: "pizza", Enabled: true,
		Conditions: []*pushrules.PushCondition{{Kind: pushrules.KindEventMatch, Key: "content.body", Pattern: "*pizza*"}},
		Actions:    act(`["notify",{"set_tweak":"highlight"}]`)}, "", ""))
	must(r.Put(ctx, bob, &pushrules.PushRule{Type: pushrules.ContentRule, RuleID: "lunch", Enabled: true,
		Pattern: "lunch", Actions: act(`["notify",{"set_tweak":"sound","value":"lunch"}]`)}, "", ""))
	must(r.Put(ctx, bob, &pushrules.PushRule{Type: pushrules.RoomRule, RuleID: roomB, Enabled: true,
		Actions: act(`[]`)}, "", ""))
	must(r.Put(ctx, bob, &pushrules.PushRule{Type: pushrules.SenderRule, RuleID: dave, Enabled: true,
		Actions: act(`["notify",{"set_tweak":"highlight"}]`)}, "", ""))
	must(r.SetActions(ctx, bob, "underride", ".m.rule.message", act(`["notify",{"set_tweak":"sound","value":"default"}]`)))
	// carol: user mentions and display names off, an underride of her own
	// on the room's size, a content rule on a name others also mention.
	must(r.SetEnabled(ctx, carol, "override", ".m.rule.is_user_mention", false))
	must(r.SetEnabled(ctx, carol, "override", ".m.rule.contains_display_name", false))
	must(r.Put(ctx, carol, &pushrules.PushRule{Type: pushrules.UnderrideRule, RuleID: "big", Enabled: true,
		Conditions: []*pushrules.PushCondition{{Kind: pushrules.KindRoomMemberCount, MemberCountCondition: ">5"}},
		Actions:    act(`["notify",{"set_tweak":"sound","value":"big"}]`)}, "", ""))
	must(r.Put(ctx, carol, &pushrules.PushRule{Type: pushrules.ContentRule, RuleID: "alice", Enabled: true,
		Pattern: "ali*", Actions: act(`["notify"]`)}, "", ""))
	// dave: the master rule on (everything silenced).
	must(r.SetEnabled(ctx, dave, "override", ".m.rule.master", true))

	users := []struct{ id, name string }{{alice, "Alice"}, {bob, "Bobby B"}, {carol, "Carol Smith"}, {dave, ""}, {user("erin"), "Alice"}}
	events := []string{
		`{"type":"m.room.message","content":{"msgtype":"m.text","body":"plain"}}`,
		`{"type":"m.room.message","content":{"msgtype":"m.text","body":"hi Alice and Carol Smith!"}}`,
		`{"type":"m.room.message","content":{"msgtype":"m.text","body":"hi Alice","m.mentions":{}}}`,
		`{"type":"m.room.message","content":{"msgtype":"m.text","body":"hey","m.mentions":{"user_ids":["@carol:push.test","@bob:push.test"]}}}`,
		`{"type":"m.room.message","content":{"msgtype":"m.text","body":"all","m.mentions":{"room":true}}}`,
		`{"type":"m.room.message","content":{"msgtype":"m.text","body":"@room look"}}`,
		`{"type":"m.room.message","content":{"msgtype":"m.notice","body":"Alice pizza"}}`,
		`{"type":"m.room.message","content":{"msgtype":"m.text","body":"pizza for lunch, bob?"}}`,
		`{"type":"m.room.message","content":{"msgtype":"m.text","body":"LUNCH"}}`,
		`{"type":"m.room.message","content":{"msgtype":"m.text","body":"* fixed","m.relates_to":{"rel_type":"m.replace","event_id":"$x"}}}`,
		`{"type":"m.room.message","content":{"msgtype":"m.text","body":42}}`,
		`{"type":"m.room.encrypted","content":{"algorithm":"m.megolm.v1.aes-sha2","ciphertext":"x"}}`,
		`{"type":"m.reaction","content":{"m.relates_to":{"rel_type":"m.annotation","event_id":"$x","key":"👍"}}}`,
		`{"type":"m.room.member","state_key":"@carol:push.test","content":{"membership":"invite"}}`,
		`{"type":"m.room.member","state_key":"@bob:push.test","content":{"membership":"join","displayname":"Bobby B"}}`,
		`{"type":"m.room.tombstone","state_key":"","content":{"body":"moved","replacement_room":"!c:push.test"}}`,
		`{"type":"org.example.custom","content":{"body":"Alice"}}`,
		`{"type":"m.call.invite","content":{"call_id":"c","lifetime":60000,"version":"1"}}`,
	}
	seen := map[string]int{}
	for i, raw := range events {
		for _, roomID := range []string{roomA, roomB} {
			for _, sender := range []string{alice, dave} {
				for _, members := range []int{2, 10} {
					var mev event.Event
					if err := json.Unmarshal([]byte(raw), &mev); err != nil {
						t.Fatal(err)
					}
					mev.RoomID, mev.Sender, mev.ID = id.RoomID(roomID), id.UserID(sender), id.EventID(fmt.Sprintf("$%d", i))
					level, notif := 0, 50
					if sender == alice {
						level = 100
					}
					pl := &event.PowerLevelsEventContent{Users: map[id.UserID]int{mev.Sender: level},
						Notifications: &event.NotificationPowerLevels{RoomPtr: &notif}}
					shared := newMatcher(&evalRoom{members: members, pl: pl}, &mev)
					// Twice over the users, forwards then backwards, so
					// every user also reads results another user left.
					order := append(append([]int{}, 0, 1, 2, 3, 4), 4, 3, 2, 1, 0)
					for _, u := range order {
						rs, err := r.Ruleset(users[u].id)
						if err != nil {
							t.Fatal(err)
						}
						shared.room.displayName = users[u].name
						got, _ := json.Marshal(shared.actions(rs))
						want, _ := json.Marshal(rs.GetActions(&evalRoom{displayName: users[u].name, members: members, pl: pl}, &mev))
						if string(got) != string(want) {
							t.Errorf("event %d in %s from %s (%d members) for %s: shared matcher %s, mautrix %s",
								i, roomID, sender, members, users[u].id, got, want)
						}
						seen[string(want)]++
					}
				}
			}
		}
	}
	// The cases must cover every kind of outcome the rules above produce
	// (in mautrix's encoding, which writes a tweak's missing value as null).
	for _, want := range []string{`["dont_notify"]`, `["notify"]`, `[]`,
		`["notify",{"set_tweak":"highlight","value":null}]`,
		`["notify",{"set_tweak":"sound","value":"default"},{"set_tweak":"highlight","value":null}]`,
		`["notify",{"set_tweak":"sound","value":"lunch"}]`, `["notify",{"set_tweak":"sound","value":"big"}]`,
		`["notify",{"set_tweak":"sound","value":"ring"}]`} {
		if seen[want] == 0 {
			t.Errorf("no case gave %s; outcomes: %v", want, seen)
		}
	}
}
