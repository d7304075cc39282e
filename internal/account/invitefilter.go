package account

import (
	"encoding/json"
	"strings"

	"github.com/hearth-chat/hearth/internal/store"
)

// Invite filtering: MSC4155 (account data
// org.matrix.msc4155.invite_permission_config, as the conformance suite
// tests it) and the spec's m.invite_permission_config (v1.18, MSC4380:
// default_action "block" refuses every invite).

// InvitePermissionConfig and InvitePermissionConfigStable are the account
// data types read.
const (
	InvitePermissionConfig       = "org.matrix.msc4155.invite_permission_config"
	InvitePermissionConfigStable = "m.invite_permission_config"
)

// InviteAction is what happens to an invite of a user.
type InviteAction int

const (
	// InviteAllow: the invite is made and shown.
	InviteAllow InviteAction = iota
	// InviteIgnore: the invite is made, the inviter sees it succeed, but
	// the invitee's clients are not shown it (MSC4155, MSC4283).
	InviteIgnore
	// InviteBlock: the invite is refused, 403 M_INVITE_BLOCKED.
	InviteBlock
)

// InviteRules is a user's invite permission config. Its zero value allows
// every invite.
type InviteRules struct {
	AllowedUsers, IgnoredUsers, BlockedUsers       []string
	AllowedServers, IgnoredServers, BlockedServers []string
	// BlockAll is m.invite_permission_config's default_action "block".
	BlockAll bool
}

// ParseInviteRules reads the MSC4155 content (msc4155) and the spec's
// m.invite_permission_config content (stable); either may be nil. Fields
// that are missing, null or not arrays count as empty and entries that
// are not strings are skipped (MSC4155: "A missing or null property MUST
// be treated like an empty array"), so a bad config never refuses more
// than it names.
func ParseInviteRules(msc4155, stable json.RawMessage) InviteRules {
	var r InviteRules
	var fields map[string]json.RawMessage
	if json.Unmarshal(msc4155, &fields) == nil {
		for name, dst := range map[string]*[]string{
			"allowed_users": &r.AllowedUsers, "ignored_users": &r.IgnoredUsers, "blocked_users": &r.BlockedUsers,
			"allowed_servers": &r.AllowedServers, "ignored_servers": &r.IgnoredServers, "blocked_servers": &r.BlockedServers,
		} {
			var items []json.RawMessage
			if json.Unmarshal(fields[name], &items) != nil {
				continue
			}
			for _, it := range items {
				var s string
				if json.Unmarshal(it, &s) == nil {
					*dst = append(*dst, s)
				}
			}
		}
	}
	var st struct {
		DefaultAction json.RawMessage `json:"default_action"`
	}
	if json.Unmarshal(stable, &st) == nil {
		r.BlockAll = string(st.DefaultAction) == `"block"`
	}
	return r
}

// Action is what to do with an invite sent by inviter (a user ID). The
// MSC4155 order: the user lists (allowed, ignored, blocked), then the
// server lists in the same order, else allow; the first match decides,
// so an allowed user of a blocked server is allowed and a blocked user of
// an allowed server blocked. Entries are globs (Appendices §"Glob-style
// matching"); server names compare without case.
func (r InviteRules) Action(inviter string) InviteAction {
	if r.BlockAll {
		return InviteBlock
	}
	server := ""
	if i := strings.IndexByte(inviter, ':'); i >= 0 {
		server = strings.ToLower(inviter[i+1:])
	}
	lists := []struct {
		globs  []string
		server bool
		action InviteAction
	}{
		{r.AllowedUsers, false, InviteAllow}, {r.IgnoredUsers, false, InviteIgnore}, {r.BlockedUsers, false, InviteBlock},
		{r.AllowedServers, true, InviteAllow}, {r.IgnoredServers, true, InviteIgnore}, {r.BlockedServers, true, InviteBlock},
	}
	for _, l := range lists {
		for _, g := range l.globs {
			if l.server && globMatch(strings.ToLower(g), server) || !l.server && globMatch(g, inviter) {
				return l.action
			}
		}
	}
	return InviteAllow
}

// InviteRules reads a local user's invite permission config (the zero
// value, allowing everything, when none is set).
func (a *Accounts) InviteRules(localpart string) (InviteRules, error) {
	var r InviteRules
	err := a.db.View(func(tx *store.Tx) error {
		r = InviteRulesIn(tx, localpart)
		return nil
	})
	return r, err
}

// InviteRulesIn is InviteRules inside a transaction (push reads it so an
// ignored invite notifies nobody).
func InviteRulesIn(tx *store.Tx, localpart string) InviteRules {
	return ParseInviteRules(GetAccountData(tx, localpart, "", InvitePermissionConfig),
		GetAccountData(tx, localpart, "", InvitePermissionConfigStable))
}

// globMatch reports whether s matches the whole glob pattern, where *
// matches any run of characters and ? exactly one (Appendices §"Glob-style
// matching"). It backtracks only to the last *, so it takes time linear
// in len(pattern)·len(s) at worst, whatever the pattern.
func globMatch(pattern, s string) bool {
	p, n := []rune(pattern), []rune(s)
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(n) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == n[si]):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			mark++
			pi, si = star+1, mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
