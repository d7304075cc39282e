package matrix

import "encoding/json"

// ignoredUsers reads the user's m.ignored_user_list account data
// (Client-Server API §"Ignoring Users"): /sync hides their invites.
func (s *Server) ignoredUsers(localpart string) map[string]bool {
	raw, err := s.accounts.AccountData(localpart, "", "m.ignored_user_list")
	if err != nil {
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
