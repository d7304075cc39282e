package matrix

import (
	"encoding/json"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/store"
)

// ignoredUsersIn is SyncRequest.IgnoredIn: the users in the user's
// m.ignored_user_list account data (Client-Server API §"Ignoring Users"),
// whose invites and non-state timeline events /sync hides. It is read in
// the sync's own transaction rather than one of its own per /sync.
func ignoredUsersIn(localpart string) func(tx *store.Tx) map[string]bool {
	return func(tx *store.Tx) map[string]bool {
		return parseIgnored(account.GetAccountData(tx, localpart, "", "m.ignored_user_list"))
	}
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
