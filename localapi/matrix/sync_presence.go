package matrix

import (
	"encoding/json"
	"sort"

	"github.com/hearth-chat/hearth/internal/room"
)

// newlySharedPresence adds to an incremental /sync the presence of users
// who newly share a room with the caller (room.JoinedRoom.NewMembers):
// the members of a room the caller joined, and those who joined one of
// the caller's rooms. Their presence may not have changed since the
// token, yet the client has never been told it (sytest "Newly joined
// room includes presence in incremental sync", "Get presence for newly
// joined members in incremental sync"). Users already in evs are left out.
func (p *presence) newlySharedPresence(rooms *room.SyncRooms, evs []json.RawMessage) []json.RawMessage {
	have := map[string]bool{}
	for _, raw := range evs {
		var ev struct {
			Sender string `json:"sender"`
		}
		if json.Unmarshal(raw, &ev) == nil {
			have[ev.Sender] = true
		}
	}
	var users []string
	for _, jr := range rooms.Join {
		for _, u := range jr.NewMembers {
			if !have[u] {
				have[u] = true
				users = append(users, u)
			}
		}
	}
	sort.Strings(users)
	var remote map[string]json.RawMessage
	for _, uid := range users {
		var content any
		if lp := p.accounts.Localpart(uid); lp != "" {
			u, err := p.accounts.Get(lp)
			if err != nil || u == nil {
				continue
			}
			content = p.content(u)
		} else if p.fed != nil {
			if remote == nil {
				remote, _ = p.fed.RemotePresence(0, 0)
			}
			if r := remote[uid]; r != nil {
				content = r
			}
		}
		if content == nil {
			continue
		}
		b, _ := json.Marshal(map[string]any{"type": "m.presence", "sender": uid, "content": content})
		evs = append(evs, b)
	}
	return evs
}
