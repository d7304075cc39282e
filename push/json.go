package push

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"maunium.net/go/mautrix/pushrules"

	"github.com/hearth-chat/hearth/internal/store"
)

// mautrix writes a set_tweak action without a value as
// {"set_tweak": "highlight", "value": null}. The spec (Client-Server API
// §"Actions") writes it {"set_tweak": "highlight"}, meaning true, and
// clients read the null as false: mentions were not highlighted. The types
// here are what every push rule and action leaving the server goes
// through: /pushrules, the m.push_rules account data and /notifications.

// Actions is a list of actions in the spec's JSON form.
type Actions pushrules.PushActionArray

// MarshalJSON writes each action as a string or a set_tweak object whose
// value is there only when it has one.
func (a Actions) MarshalJSON() ([]byte, error) { return json.Marshal(actionsJSON(a)) }

// tweakJSON is a set_tweak action; a nil Value is left out (omitempty on
// an interface drops only nil, so a false value stays).
type tweakJSON struct {
	SetTweak pushrules.PushActionTweak `json:"set_tweak"`
	Value    any                       `json:"value,omitempty"`
}

func actionsJSON(a []*pushrules.PushAction) []any {
	out := make([]any, len(a))
	for i, act := range a {
		if act.Action != pushrules.ActionSetTweak {
			out[i] = act.Action
			continue
		}
		out[i] = tweakJSON{SetTweak: act.Tweak, Value: act.Value}
	}
	return out
}

// Rule is a push rule in the spec's JSON form.
type Rule pushrules.PushRule

// MarshalJSON writes the rule as mautrix does, with the actions as Actions.
func (r *Rule) MarshalJSON() ([]byte, error) { return json.Marshal(ruleJSONOf(r)) }

// ruleJSON is a rule with its actions in the spec's form: the outer
// Actions field hides the embedded one. Plain values all the way down, so
// a ruleset is encoded in one pass (nested MarshalJSON methods made the
// encoder re-read each rule's output, and an initial /sync, which carries
// the rules, 0.3 ms slower).
type ruleJSON struct {
	*plainRule
	Actions []any `json:"actions"`
}

type plainRule pushrules.PushRule // without Rule's method

func ruleJSONOf(r *Rule) ruleJSON {
	return ruleJSON{(*plainRule)(r), actionsJSON(r.Actions)}
}

// RuleArray is a list of push rules in the spec's JSON form.
type RuleArray pushrules.PushRuleArray

// MarshalJSON writes every rule as Rule does, and [] for none.
func (a RuleArray) MarshalJSON() ([]byte, error) {
	out := make([]ruleJSON, len(a))
	for i, r := range a {
		out[i] = ruleJSONOf((*Rule)(r))
	}
	return json.Marshal(out)
}

// GlobalOf is a ruleset in the spec's shape: kind → its rules in
// evaluation order, every kind present.
func GlobalOf(rs *pushrules.PushRuleset) map[string]RuleArray { return globalOf(rs, nil) }

// globalOf is GlobalOf with the user's stored room and sender rules (st,
// nil for none), which mautrix's ruleset keeps unordered.
func globalOf(rs *pushrules.PushRuleset, st *stored) map[string]RuleArray {
	out := map[string]RuleArray{}
	for _, k := range Kinds {
		out[k] = RuleArray(ordered(rs, st, k))
	}
	return out
}

// repairStoredJSON rewrites the m.push_rules account data that servers
// before the fix above stored with "value": null tweaks, once, at start:
// clients read account data as stored, so without this a user who changed
// a rule then would never see highlights until they changed another.
func (r *Rules) repairStoredJSON(ctx context.Context) error {
	var users []string
	err := r.db.View(func(tx *store.Tx) error {
		c := tx.Cursor(store.PushRules)
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			userID := string(k)
			ad := tx.Get(store.AccountData, store.Key(localpart(userID), "", "m.push_rules"))
			if bytes.Contains(ad, []byte(`"value":null`)) {
				users = append(users, userID)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, u := range users {
		if err := r.update(ctx, u, func(*stored, *pushrules.PushRuleset) error { return nil }); err != nil {
			return fmt.Errorf("push: rewrite m.push_rules of %s: %w", u, err)
		}
	}
	return nil
}
