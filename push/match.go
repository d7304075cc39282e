package push

import (
	"regexp"
	"slices"
	"strings"
	"sync"

	"go.mau.fi/util/glob"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/pushrules"
)

// matcher runs many recipients' rulesets over one event with the result
// of mautrix's PushRuleset.GetActions, doing each piece of work once per
// event rather than once per recipient. Every user's ruleset holds the
// same server-default conditions, so in a room of 32 members mautrix
// would compile the same globs and read the same fields 31 times
// (Issue 15's profile: push was ~44% of a hot room's CPU per event).
//
// Condition results are remembered per condition, and Rules.Ruleset
// interns conditions (intern below) so that equal conditions of different
// users are one pointer. That is exact because, for one event, a
// condition's outcome depends only on its fields and on the evalRoom,
// whose member count and power levels are the same for every recipient;
// only contains_display_name reads the recipient (their display name),
// so it is not remembered. The recipient's own user ID enters through the
// condition's fields (the USER_ID in .m.rule.is_user_mention's value,
// .m.rule.invite_for_me's pattern), so those stay per user. A matcher is
// used by one goroutine.
type matcher struct {
	room        *evalRoom
	evt         *event.Event
	hasMentions bool // m.mentions present: the legacy mention rules are off
	conds       map[*pushrules.PushCondition]bool
	content     map[string]bool
}

// condKey is a condition's content, for interning.
type condKey struct {
	kind                      pushrules.PushCondKind
	key, pattern, is, relType string
	value                     any
}

// interned maps a condition's content to the one pointer every ruleset
// uses for it. Bounded: past maxInterned it starts over (rulesets built
// before keep their pointers and are merely shared less).
var interned struct {
	sync.Mutex
	m map[condKey]*pushrules.PushCondition
}

const maxInterned = 4096

// intern replaces the conditions of rs's rules by their shared copies.
// rs must be freshly built (merge): its condition slices are its own.
func intern(rs *pushrules.PushRuleset) {
	interned.Lock()
	defer interned.Unlock()
	for _, arr := range []pushrules.PushRuleArray{rs.Override, rs.Underride} {
		for _, rule := range arr {
			conds := slices.Clone(rule.Conditions)
			for i, c := range conds {
				switch c.Value.(type) {
				case nil, string, bool, float64, int, int64:
				default:
					continue // not a comparable scalar (the spec allows none other)
				}
				k := condKey{kind: c.Kind, key: c.Key, pattern: c.Pattern, is: c.MemberCountCondition,
					relType: string(c.RelType), value: c.Value}
				if shared, ok := interned.m[k]; ok {
					conds[i] = shared
					continue
				}
				if len(interned.m) >= maxInterned || interned.m == nil {
					interned.m = map[condKey]*pushrules.PushCondition{}
				}
				interned.m[k] = c
			}
			rule.Conditions = conds
		}
	}
}

func newMatcher(room *evalRoom, evt *event.Event) *matcher {
	_, mentions := evt.Content.Raw["m.mentions"]
	return &matcher{room: room, evt: evt, hasMentions: mentions,
		conds: map[*pushrules.PushCondition]bool{}, content: map[string]bool{}}
}

// actions is PushRuleset.GetActions: the first matching rule of override,
// content, room, sender, underride, in that order (Client-Server API
// §"Push Rules"), or dont_notify.
func (m *matcher) actions(rs *pushrules.PushRuleset) pushrules.PushActionArray {
	rule := m.first(rs.Override)
	if rule == nil {
		rule = m.first(rs.Content)
	}
	if rule == nil {
		// Room and sender rules are one map lookup each: mautrix's own.
		rule = rs.Room.GetMatchingRule(m.room, m.evt)
	}
	if rule == nil {
		rule = rs.Sender.GetMatchingRule(m.room, m.evt)
	}
	if rule == nil {
		rule = m.first(rs.Underride)
	}
	if actions := rule.GetActions(); actions != nil {
		return actions
	}
	return pushrules.DefaultPushActions
}

func (m *matcher) first(rules pushrules.PushRuleArray) *pushrules.PushRule {
	for _, rule := range rules {
		if m.match(rule) {
			return rule
		}
	}
	return nil
}

// match is PushRule.Match with the remembered condition results.
func (m *matcher) match(rule *pushrules.PushRule) bool {
	if rule == nil || !rule.Enabled {
		return false
	}
	switch rule.RuleID {
	case ".m.rule.contains_display_name", ".m.rule.contains_user_name", ".m.rule.roomnotif":
		// As mautrix: an event with m.mentions turns the legacy rules off
		// (Client-Server API §"Predefined Rules", intentional mentions).
		if m.hasMentions {
			return false
		}
	}
	switch rule.Type {
	case pushrules.OverrideRule, pushrules.UnderrideRule:
		for _, c := range rule.Conditions {
			if !m.cond(c) {
				return false
			}
		}
		return true
	case pushrules.ContentRule:
		return m.contentMatch(rule.Pattern)
	default:
		return rule.Match(m.room, m.evt)
	}
}

func (m *matcher) cond(c *pushrules.PushCondition) bool {
	if c.Kind == pushrules.KindContainsDisplayName {
		return c.Match(m.room, m.evt) // the recipient's own name
	}
	ok, seen := m.conds[c]
	if !seen {
		ok = c.Match(m.room, m.evt)
		m.conds[c] = ok
	}
	return ok
}

// contentMatch is mautrix's content-rule match (the glob as a whole-word,
// case-insensitive regexp over content.body) with the regexp compiled
// once per pattern, not once per event and recipient: every user's
// .m.rule.contains_user_name has its own pattern.
func (m *matcher) contentMatch(pattern string) bool {
	ok, seen := m.content[pattern]
	if seen {
		return ok
	}
	if body, isString := m.evt.Content.Raw["body"].(string); isString {
		if re := contentRegexp(pattern); re != nil {
			ok = re.MatchString(body)
		}
	}
	m.content[pattern] = ok
	return ok
}

// contentRegexps caches compiled content-rule patterns (nil for a pattern
// that does not compile, which matches nothing, as in mautrix). Bounded:
// past maxContentRegexps it starts over.
var contentRegexps struct {
	sync.Mutex
	m map[string]*regexp.Regexp
}

const maxContentRegexps = 4096

func contentRegexp(pattern string) *regexp.Regexp {
	contentRegexps.Lock()
	re, ok := contentRegexps.m[pattern]
	contentRegexps.Unlock()
	if ok {
		return re
	}
	var buf strings.Builder
	buf.WriteString(`(?i)\b`)
	if glob.ToRegexPattern(pattern, &buf) == nil {
		buf.WriteString(`\b`)
		re, _ = regexp.Compile(buf.String())
	}
	contentRegexps.Lock()
	if len(contentRegexps.m) >= maxContentRegexps || contentRegexps.m == nil {
		contentRegexps.m = map[string]*regexp.Regexp{}
	}
	contentRegexps.m[pattern] = re
	contentRegexps.Unlock()
	return re
}
