// Package push owns push (Client-Server API §"Push Notifications", Push
// Gateway API): the spec's predefined rules and each user's own rules,
// the evaluator that follows the stream and runs every local recipient's
// rules over each new event (with mautrix's pushrules), the notification
// log behind unread counts and /notifications, and pushers with their
// persistent delivery queues. It reads no HTTP and writes no room data:
// room facts come from the room engine's read API (internal/room/follow_push.go).
package push

import (
	"encoding/json"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/pushrules"
)

// defaultRules are the server-default push rules of the Client-Server API
// (§"Predefined Rules"), in the spec's order. USER_ID and LOCALPART are
// replaced per user. The deprecated body-matching rules
// (.m.rule.contains_display_name, .m.rule.contains_user_name,
// .m.rule.roomnotif) stay until clients stop relying on them.
const defaultRules = `{
 "override": [
  {"rule_id": ".m.rule.master", "default": true, "enabled": false, "conditions": [], "actions": []},
  {"rule_id": ".m.rule.suppress_notices", "default": true, "enabled": true,
   "conditions": [{"kind": "event_match", "key": "content.msgtype", "pattern": "m.notice"}], "actions": []},
  {"rule_id": ".m.rule.invite_for_me", "default": true, "enabled": true,
   "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.room.member"},
                  {"kind": "event_match", "key": "content.membership", "pattern": "invite"},
                  {"kind": "event_match", "key": "state_key", "pattern": "USER_ID"}],
   "actions": ["notify", {"set_tweak": "sound", "value": "default"}]},
  {"rule_id": ".m.rule.member_event", "default": true, "enabled": true,
   "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.room.member"}], "actions": []},
  {"rule_id": ".m.rule.is_user_mention", "default": true, "enabled": true,
   "conditions": [{"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": "USER_ID"}],
   "actions": ["notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}]},
  {"rule_id": ".m.rule.contains_display_name", "default": true, "enabled": true,
   "conditions": [{"kind": "contains_display_name"}],
   "actions": ["notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}]},
  {"rule_id": ".m.rule.is_room_mention", "default": true, "enabled": true,
   "conditions": [{"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": true},
                  {"kind": "sender_notification_permission", "key": "room"}],
   "actions": ["notify", {"set_tweak": "highlight"}]},
  {"rule_id": ".m.rule.roomnotif", "default": true, "enabled": true,
   "conditions": [{"kind": "event_match", "key": "content.body", "pattern": "@room"},
                  {"kind": "sender_notification_permission", "key": "room"}],
   "actions": ["notify", {"set_tweak": "highlight"}]},
  {"rule_id": ".m.rule.tombstone", "default": true, "enabled": true,
   "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.room.tombstone"},
                  {"kind": "event_match", "key": "state_key", "pattern": ""}],
   "actions": ["notify", {"set_tweak": "highlight"}]},
  {"rule_id": ".m.rule.reaction", "default": true, "enabled": true,
   "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.reaction"}], "actions": []},
  {"rule_id": ".m.rule.room.server_acl", "default": true, "enabled": true,
   "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.room.server_acl"},
                  {"kind": "event_match", "key": "state_key", "pattern": ""}], "actions": []},
  {"rule_id": ".m.rule.suppress_edits", "default": true, "enabled": true,
   "conditions": [{"kind": "event_property_is", "key": "content.m\\.relates_to.rel_type", "value": "m.replace"}],
   "actions": []}
 ],
 "content": [
  {"rule_id": ".m.rule.contains_user_name", "default": true, "enabled": true, "pattern": "LOCALPART",
   "actions": ["notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}]}
 ],
 "room": [],
 "sender": [],
 "underride": [
  {"rule_id": ".m.rule.call", "default": true, "enabled": true,
   "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.call.invite"}],
   "actions": ["notify", {"set_tweak": "sound", "value": "ring"}]},
  {"rule_id": ".m.rule.encrypted_room_one_to_one", "default": true, "enabled": true,
   "conditions": [{"kind": "room_member_count", "is": "2"},
                  {"kind": "event_match", "key": "type", "pattern": "m.room.encrypted"}],
   "actions": ["notify", {"set_tweak": "sound", "value": "default"}]},
  {"rule_id": ".m.rule.room_one_to_one", "default": true, "enabled": true,
   "conditions": [{"kind": "room_member_count", "is": "2"},
                  {"kind": "event_match", "key": "type", "pattern": "m.room.message"}],
   "actions": ["notify", {"set_tweak": "sound", "value": "default"}]},
  {"rule_id": ".m.rule.message", "default": true, "enabled": true,
   "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.room.message"}], "actions": ["notify"]},
  {"rule_id": ".m.rule.encrypted", "default": true, "enabled": true,
   "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.room.encrypted"}], "actions": ["notify"]}
 ]
}`

// Defaults returns the predefined rules for one user.
func Defaults(userID string) (*pushrules.PushRuleset, error) {
	localpart, _, _ := strings.Cut(strings.TrimPrefix(userID, "@"), ":")
	quoted := func(s string) string { b, _ := json.Marshal(s); return string(b[1 : len(b)-1]) }
	raw := strings.NewReplacer("USER_ID", quoted(userID), "LOCALPART", quoted(localpart)).Replace(defaultRules)
	var rs pushrules.PushRuleset
	if err := json.Unmarshal([]byte(raw), &rs); err != nil {
		return nil, fmt.Errorf("push: default rules: %w", err)
	}
	return &rs, nil
}
