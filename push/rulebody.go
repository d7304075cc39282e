package push

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"

	"maunium.net/go/mautrix/pushrules"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// RuleBody is the body of PUT /pushrules/global/{kind}/{ruleId}.
type RuleBody struct {
	Actions    pushrules.PushActionArray  `json:"actions"`
	Conditions []*pushrules.PushCondition `json:"conditions"`
	Pattern    *string                    `json:"pattern"`
}

// condition kinds the spec defines (§"Conditions"); others are refused
// when set, though the spec lets servers ignore unknown ones on read.
var condKinds = map[pushrules.PushCondKind]bool{
	pushrules.KindEventMatch: true, pushrules.KindEventPropertyIs: true,
	pushrules.KindEventPropertyContains: true, pushrules.KindContainsDisplayName: true,
	pushrules.KindRoomMemberCount: true, pushrules.KindSenderNotificationPermission: true,
}

// DecodeRule parses and validates a rule body for kind (Client-Server API
// §"PUT /pushrules/global/{kind}/{ruleId}"). Every failure is a Matrix
// error (M_NOT_JSON, M_BAD_JSON or M_INVALID_PARAM) and nothing is stored.
func DecodeRule(kind, ruleID string, body []byte) (*pushrules.PushRule, error) {
	if !slices.Contains(Kinds, kind) {
		return nil, matrixerr.InvalidParam("unknown push rule kind " + kind)
	}
	if err := checkRuleID(kind, ruleID); err != nil {
		return nil, err
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil || raw == nil {
		return nil, matrixerr.BadJSON("the rule must be a JSON object")
	}
	if raw["actions"] == nil {
		return nil, matrixerr.MissingParam("actions is required")
	}
	actions, err := DecodeActions(raw["actions"])
	if err != nil {
		return nil, err
	}
	rule := &pushrules.PushRule{RuleID: ruleID, Actions: actions, Enabled: true, Type: pushrules.PushRuleType(kind)}
	switch kind {
	case "override", "underride":
		if c := raw["conditions"]; c != nil && !bytes.Equal(c, []byte("null")) {
			var conds []json.RawMessage
			if err := json.Unmarshal(c, &conds); err != nil {
				return nil, matrixerr.BadJSON("conditions must be an array")
			}
			for _, cr := range conds {
				cond, err := decodeCondition(cr)
				if err != nil {
					return nil, err
				}
				rule.Conditions = append(rule.Conditions, cond)
			}
		}
		if rule.Conditions == nil {
			rule.Conditions = []*pushrules.PushCondition{}
		}
	case "content":
		var p string
		if err := json.Unmarshal(raw["pattern"], &p); err != nil || p == "" {
			return nil, matrixerr.BadJSON("content rules need a string pattern")
		}
		rule.Pattern = p
	}
	return rule, nil
}

func checkRuleID(kind, ruleID string) error {
	switch {
	case ruleID == "":
		return matrixerr.InvalidParam("empty rule ID")
	case strings.HasPrefix(ruleID, "."):
		return matrixerr.InvalidParam("rule IDs starting with '.' are reserved for server-default rules")
	case strings.ContainsAny(ruleID, "/\\"):
		return matrixerr.InvalidParam("rule IDs may not contain slashes")
	case kind == "room" && !strings.HasPrefix(ruleID, "!"):
		return matrixerr.InvalidParam("room rules are named by a room ID")
	case kind == "sender" && (!strings.HasPrefix(ruleID, "@") || !strings.Contains(ruleID, ":")):
		return matrixerr.InvalidParam("sender rules are named by a user ID")
	}
	return nil
}

func decodeCondition(b []byte) (*pushrules.PushCondition, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil || raw == nil {
		return nil, matrixerr.BadJSON("each condition must be an object")
	}
	var c pushrules.PushCondition
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, matrixerr.BadJSON("bad condition: " + err.Error())
	}
	if !condKinds[c.Kind] {
		return nil, matrixerr.BadJSON("unknown condition kind " + string(c.Kind))
	}
	switch c.Kind {
	case pushrules.KindEventMatch:
		if c.Key == "" || raw["pattern"] == nil {
			return nil, matrixerr.BadJSON("event_match needs key and pattern")
		}
	case pushrules.KindEventPropertyIs, pushrules.KindEventPropertyContains:
		if c.Key == "" || raw["value"] == nil {
			return nil, matrixerr.BadJSON(string(c.Kind) + " needs key and value")
		}
		switch v := c.Value.(type) {
		case string, bool, nil:
		case float64:
			if v != float64(int64(v)) {
				return nil, matrixerr.BadJSON("value must be a string, integer, boolean or null")
			}
		default:
			return nil, matrixerr.BadJSON("value must be a string, integer, boolean or null")
		}
	case pushrules.KindRoomMemberCount:
		if !pushrules.MemberCountFilterRegex.MatchString(c.MemberCountCondition) {
			return nil, matrixerr.BadJSON("room_member_count needs is like \"2\" or \">=10\"")
		}
	case pushrules.KindSenderNotificationPermission:
		if c.Key == "" {
			return nil, matrixerr.BadJSON("sender_notification_permission needs key")
		}
	}
	return &c, nil
}

// DecodeActions parses an actions array: "notify", "dont_notify",
// "coalesce" (the last two are legacy and accepted) or {"set_tweak": …}.
// The sound tweak must carry a string, highlight a boolean, as mautrix's
// evaluator assumes.
func DecodeActions(b []byte) (pushrules.PushActionArray, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil || raw == nil {
		return nil, matrixerr.BadJSON("actions must be an array")
	}
	out := pushrules.PushActionArray{}
	for _, a := range raw {
		var s string
		if json.Unmarshal(a, &s) == nil {
			switch pushrules.PushActionType(s) {
			case pushrules.ActionNotify, pushrules.ActionDontNotify, pushrules.ActionCoalesce:
				out = append(out, &pushrules.PushAction{Action: pushrules.PushActionType(s)})
				continue
			}
			return nil, matrixerr.BadJSON("unknown action " + s)
		}
		var t struct {
			Tweak *string `json:"set_tweak"`
			Value any     `json:"value"`
		}
		if err := json.Unmarshal(a, &t); err != nil || t.Tweak == nil || *t.Tweak == "" {
			return nil, matrixerr.BadJSON("an action is a string or a set_tweak object")
		}
		act := &pushrules.PushAction{Action: pushrules.ActionSetTweak, Tweak: pushrules.PushActionTweak(*t.Tweak), Value: t.Value}
		switch act.Tweak {
		case pushrules.TweakSound:
			if _, ok := t.Value.(string); !ok {
				return nil, matrixerr.BadJSON("the sound tweak needs a string value")
			}
		case pushrules.TweakHighlight:
			if _, ok := t.Value.(bool); !ok && t.Value != nil {
				return nil, matrixerr.BadJSON("the highlight tweak needs a boolean value")
			}
			if t.Value == nil {
				act.Value = true
			}
		}
		out = append(out, act)
	}
	return out, nil
}

// Put adds or replaces a user rule; before and after name user rules of
// the same kind (at most one applies: before wins, as the spec says).
func (r *Rules) Put(ctx context.Context, userID string, rule *pushrules.PushRule, before, after string) error {
	kind := string(rule.Type)
	return r.update(ctx, userID, func(st *stored, _ *pushrules.PushRuleset) error {
		list := st.User[kind]
		old := slices.IndexFunc(list, func(x *pushrules.PushRule) bool { return x.RuleID == rule.RuleID })
		if old >= 0 && before == "" && after == "" {
			rule.Enabled = list[old].Enabled
			list[old] = rule
			st.User[kind] = list
			return nil
		}
		if old >= 0 {
			list = slices.Delete(list, old, old+1)
		}
		at := 0
		if rel := cmpOr(before, after); rel != "" {
			i := slices.IndexFunc(list, func(x *pushrules.PushRule) bool { return x.RuleID == rel })
			if i < 0 {
				return matrixerr.NotFound("before/after rule not found: " + rel).WithStatus(400)
			}
			at = i
			if before == "" {
				at = i + 1
			}
		}
		st.User[kind] = slices.Insert(list, at, rule)
		return nil
	})
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Delete removes a user rule; server-default rules cannot be deleted.
func (r *Rules) Delete(ctx context.Context, userID, kind, ruleID string) error {
	if !slices.Contains(Kinds, kind) {
		return matrixerr.InvalidParam("unknown push rule kind " + kind)
	}
	return r.update(ctx, userID, func(st *stored, rs *pushrules.PushRuleset) error {
		if isDefault(rs, kind, ruleID) {
			return matrixerr.InvalidParam("server-default rules cannot be deleted")
		}
		list := st.User[kind]
		i := slices.IndexFunc(list, func(x *pushrules.PushRule) bool { return x.RuleID == ruleID })
		if i < 0 {
			return matrixerr.NotFound("no push rule " + ruleID)
		}
		st.User[kind] = slices.Delete(list, i, i+1)
		return nil
	})
}

// SetEnabled enables or disables a rule, default or user-defined.
func (r *Rules) SetEnabled(ctx context.Context, userID, kind, ruleID string, enabled bool) error {
	return r.modify(ctx, userID, kind, ruleID, func(rule *pushrules.PushRule, c *defaultChange) {
		if c != nil {
			c.Enabled = &enabled
		} else {
			rule.Enabled = enabled
		}
	})
}

// SetActions replaces the actions of a rule, default or user-defined.
func (r *Rules) SetActions(ctx context.Context, userID, kind, ruleID string, actions pushrules.PushActionArray) error {
	return r.modify(ctx, userID, kind, ruleID, func(rule *pushrules.PushRule, c *defaultChange) {
		if c != nil {
			c.Actions = actions
		} else {
			rule.Actions = actions
		}
	})
}

// modify calls fn with the stored user rule, or with the change record of
// a server-default rule.
func (r *Rules) modify(ctx context.Context, userID, kind, ruleID string, fn func(*pushrules.PushRule, *defaultChange)) error {
	if !slices.Contains(Kinds, kind) {
		return matrixerr.InvalidParam("unknown push rule kind " + kind)
	}
	return r.update(ctx, userID, func(st *stored, rs *pushrules.PushRuleset) error {
		if isDefault(rs, kind, ruleID) {
			c := st.Defaults[ruleID]
			if c == nil {
				c = &defaultChange{}
				st.Defaults[ruleID] = c
			}
			fn(nil, c)
			return nil
		}
		for _, rule := range st.User[kind] {
			if rule.RuleID == ruleID {
				fn(rule, nil)
				return nil
			}
		}
		return matrixerr.NotFound("no push rule " + ruleID)
	})
}
