package matrix

import (
	"encoding/json"
	"sync"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
)

// ignoredCache keeps each local user's m.ignored_user_list account data
// (Client-Server API §"Ignoring Users"), parsed, with the stream position
// at which it is known to hold. /sync hides the ignored users' invites and
// non-state timeline events, and reading the list cost the rooms section
// its most expensive bucket lookup, for every response of every user,
// while the list almost never changes.
//
// Invalidation is exact and needs no hook in the writers: an entry known
// at position p still holds at now when p lies in the /sync's span
// [since, now] and the change log of (since, now] has no account data
// entry of anyone (room.ChangeKinds of the span), since account data is
// only written with such an entry (account.PutAccountData). A long poll's
// span starts where its last one ended, so its entry carries forward from
// response to response; any other span, or one with an account data
// change, reads the list again. A list read is known at the position of
// the snapshot it was read in, which is past the response's own when a
// commit landed meanwhile (as it often does while messages arrive): it
// then still lies in the next span.
type ignoredCache struct {
	mu      sync.Mutex
	entries map[string]ignoredEntry // localpart →
}

type ignoredEntry struct {
	users map[string]bool // nil: none ignored; never modified once stored
	at    uint64          // the position at which users is the list
}

// maxIgnoredEntries bounds the cache (one entry per local user who
// syncs); past it the cache starts over.
const maxIgnoredEntries = 4096

// in is SyncRequest.IgnoredIn for a /sync of the span (since, now] with
// the span's change kinds: the cached list when it provably still holds,
// else the list read in the sync's own transaction.
func (c *ignoredCache) in(localpart string, since, now uint64, kinds room.ChangeKinds) func(tx *store.Tx) map[string]bool {
	return func(tx *store.Tx) map[string]bool {
		if users, ok := c.cached(localpart, since, now, kinds); ok {
			return users
		}
		users := parseIgnored(account.GetAccountData(tx, localpart, "", "m.ignored_user_list"))
		// The list read is the list at the snapshot's position, which may
		// be past now; the span of a later /sync must reach it to use it.
		c.put(localpart, users, tx.Pos())
		return users
	}
}

// cached is the cached list when it provably holds for the span, as in.
func (c *ignoredCache) cached(localpart string, since, now uint64, kinds room.ChangeKinds) (map[string]bool, bool) {
	c.mu.Lock()
	e, ok := c.entries[localpart]
	c.mu.Unlock()
	if !ok || since == 0 || since > e.at || e.at > now || kinds.Has(account.ChangeAccountData) {
		return nil, false
	}
	if e.at != now {
		c.put(localpart, e.users, now)
	}
	return e.users, true
}

func (c *ignoredCache) put(localpart string, users map[string]bool, at uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) >= maxIgnoredEntries {
		c.entries = map[string]ignoredEntry{}
	}
	c.entries[localpart] = ignoredEntry{users: users, at: at}
}

// ignoredUsers is the same list read in a transaction of its own, for
// sliding sync, whose list is read before its rooms.
func (s *Server) ignoredUsers(localpart string) map[string]bool {
	raw, err := s.accounts.AccountData(localpart, "", "m.ignored_user_list")
	if err != nil {
		return nil // none set
	}
	return parseIgnored(raw)
}

func parseIgnored(raw []byte) map[string]bool {
	if raw == nil {
		return nil // none set
	}
	var c struct {
		IgnoredUsers map[string]json.RawMessage `json:"ignored_users"`
	}
	if json.Unmarshal(raw, &c) != nil || len(c.IgnoredUsers) == 0 {
		return nil
	}
	out := make(map[string]bool, len(c.IgnoredUsers))
	for u := range c.IgnoredUsers {
		out[u] = true
	}
	return out
}
