package push

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	"maunium.net/go/mautrix/pushrules"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// Kinds are the rule kinds of the Client-Server API §"Push Rules", in the
// order they are evaluated.
var Kinds = []string{"override", "content", "room", "sender", "underride"}

// stored is what the pushrules bucket keeps per user: the user's own rules
// per kind (most important first) and the changes made to server-default
// rules. Defaults themselves are never stored, so a newer Hearth with
// changed defaults applies them to every user.
type stored struct {
	User     map[string][]*pushrules.PushRule `json:"user,omitempty"`
	Defaults map[string]*defaultChange        `json:"defaults,omitempty"`
}

type defaultChange struct {
	Enabled *bool                     `json:"enabled,omitempty"`
	Actions pushrules.PushActionArray `json:"actions,omitempty"`
}

// Rules holds every user's push rules: the stored changes in bbolt and,
// in memory, the merged rulesets the evaluator reads on every event.
type Rules struct {
	db    *store.DB
	mu    sync.Mutex
	cache map[string]*pushrules.PushRuleset
	gen   uint64 // bumped by every change, so a read racing one is not cached
}

// NewRules returns the rule store over db.
func NewRules(db *store.DB) *Rules {
	return &Rules{db: db, cache: map[string]*pushrules.PushRuleset{}}
}

func loadStored(tx *store.Tx, userID string) (*stored, error) {
	st := &stored{}
	if b := tx.Get(store.PushRules, []byte(userID)); b != nil {
		if err := json.Unmarshal(b, st); err != nil {
			return nil, fmt.Errorf("push: decode rules of %s: %w", userID, err)
		}
	}
	if st.User == nil {
		st.User = map[string][]*pushrules.PushRule{}
	}
	if st.Defaults == nil {
		st.Defaults = map[string]*defaultChange{}
	}
	return st, nil
}

// merge builds the user's full ruleset. User rules are more important than
// the server-default rules of their kind, except .m.rule.master, which
// stays first so that it silences everything (as Synapse and clients expect).
func merge(userID string, st *stored) (*pushrules.PushRuleset, error) {
	rs, err := Defaults(userID)
	if err != nil {
		return nil, err
	}
	for _, arr := range []pushrules.PushRuleArray{rs.Override, rs.Content, rs.Underride} {
		for _, r := range arr {
			if c := st.Defaults[r.RuleID]; c != nil {
				if c.Enabled != nil {
					r.Enabled = *c.Enabled
				}
				if c.Actions != nil {
					r.Actions = c.Actions
				}
			}
		}
	}
	user := func(kind string) pushrules.PushRuleArray {
		out := pushrules.PushRuleArray{}
		for _, r := range st.User[kind] {
			c := *r
			c.Type = pushrules.PushRuleType(kind)
			out = append(out, &c)
		}
		return out
	}
	rs.Override = append(append(rs.Override[:1:1], user("override")...), rs.Override[1:]...)
	rs.Content = append(user("content"), rs.Content...)
	rs.Underride = append(user("underride"), rs.Underride...)
	rs.Room = user("room").SetTypeAndMap(pushrules.RoomRule)
	rs.Sender = user("sender").SetTypeAndMap(pushrules.SenderRule)
	return rs, nil
}

// Ruleset returns the user's full ruleset. The result is shared: callers
// must not modify it.
func (r *Rules) Ruleset(userID string) (*pushrules.PushRuleset, error) {
	r.mu.Lock()
	rs, gen := r.cache[userID], r.gen
	r.mu.Unlock()
	if rs != nil {
		return rs, nil
	}
	err := r.db.View(func(tx *store.Tx) error {
		st, err := loadStored(tx, userID)
		if err != nil {
			return err
		}
		rs, err = merge(userID, st)
		return err
	})
	if err != nil {
		return nil, err
	}
	intern(rs) // the evaluator's matcher shares results by condition
	r.mu.Lock()
	if r.gen == gen {
		r.cache[userID] = rs
	}
	r.mu.Unlock()
	return rs, nil
}

// ordered lists the rules of one kind in evaluation order; room and sender
// rules are kept in a map by mautrix, so their order is the stored one.
func ordered(rs *pushrules.PushRuleset, st *stored, kind string) pushrules.PushRuleArray {
	switch kind {
	case "override":
		return rs.Override
	case "content":
		return rs.Content
	case "underride":
		return rs.Underride
	}
	out := pushrules.PushRuleArray{}
	if st == nil {
		return out
	}
	for _, r := range st.User[kind] {
		c := *r
		c.Type = pushrules.PushRuleType(kind)
		out = append(out, &c)
	}
	return out
}

// Global returns the ruleset as the spec's JSON shape: an object of kind →
// array of rules, every array present.
func (r *Rules) Global(userID string) (map[string]RuleArray, error) {
	var out map[string]RuleArray
	err := r.db.View(func(tx *store.Tx) error {
		st, err := loadStored(tx, userID)
		if err != nil {
			return err
		}
		rs, err := merge(userID, st)
		if err != nil {
			return err
		}
		out = globalOf(rs, st)
		return nil
	})
	return out, err
}

// Rule returns one rule of a kind, or M_NOT_FOUND.
func (r *Rules) Rule(userID, kind, ruleID string) (*pushrules.PushRule, error) {
	if !slices.Contains(Kinds, kind) {
		return nil, matrixerr.InvalidParam("unknown push rule kind " + kind)
	}
	g, err := r.Global(userID)
	if err != nil {
		return nil, err
	}
	for _, rule := range g[kind] {
		if rule.RuleID == ruleID {
			return rule, nil
		}
	}
	return nil, matrixerr.NotFound("no push rule " + ruleID)
}

// update runs fn over the user's stored rules in one write transaction,
// then stores them and the merged ruleset as the m.push_rules global
// account data (so /sync reports the change), and drops the cached copy.
func (r *Rules) update(ctx context.Context, userID string, fn func(st *stored, rs *pushrules.PushRuleset) error) error {
	err := r.db.Update(ctx, func(tx *store.Tx) error {
		st, err := loadStored(tx, userID)
		if err != nil {
			return err
		}
		rs, err := merge(userID, st)
		if err != nil {
			return err
		}
		if err := fn(st, rs); err != nil {
			return err
		}
		b, err := json.Marshal(st)
		if err != nil {
			return fmt.Errorf("push: encode rules: %w", err)
		}
		if err := tx.Put(store.PushRules, []byte(userID), b); err != nil {
			return err
		}
		if rs, err = merge(userID, st); err != nil {
			return err
		}
		ad, err := json.Marshal(map[string]any{"global": globalOf(rs, st)})
		if err != nil {
			return fmt.Errorf("push: encode rules: %w", err)
		}
		// The account-data layout is account's: localpart is the full
		// user ID's localpart, as account.PutAccountData keys it.
		lp := localpart(userID)
		if err := tx.Put(store.AccountData, store.Key(lp, "", "m.push_rules"), ad); err != nil {
			return err
		}
		_, err = tx.AppendChange(store.Change{Kind: account.ChangeAccountData, Localpart: lp, Key: "m.push_rules"})
		return err
	})
	if err == nil {
		r.mu.Lock()
		delete(r.cache, userID)
		r.gen++
		r.mu.Unlock()
	}
	return err
}

func localpart(userID string) string {
	lp, _, _ := strings.Cut(strings.TrimPrefix(userID, "@"), ":")
	return lp
}

func isDefault(rs *pushrules.PushRuleset, kind, ruleID string) bool {
	if !strings.HasPrefix(ruleID, ".") {
		return false
	}
	for _, rule := range ordered(rs, nil, kind) {
		if rule.RuleID == ruleID && rule.Default {
			return true
		}
	}
	return false
}
