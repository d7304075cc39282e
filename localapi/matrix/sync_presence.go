package matrix

import (
	"encoding/json"
	"sort"
	"time"

	"github.com/hearth-chat/hearth/internal/account"
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
		if content := p.userContent(uid, &remote); content != nil {
			evs = append(evs, presenceEvent(uid, content))
		}
	}
	return evs
}

// userContent is the m.presence content of uid as far as it is known, or
// nil: a local user's from the account, another server's user's from what
// their server last sent. *remote caches those, read on first need.
func (p *presence) userContent(uid string, remote *map[string]json.RawMessage) any {
	if lp := p.accounts.Localpart(uid); lp != "" {
		u, err := p.accounts.Get(lp)
		if err != nil || u == nil {
			return nil
		}
		return p.content(u)
	}
	if p.fed == nil {
		return nil
	}
	if *remote == nil {
		*remote, _ = p.fed.RemotePresence(0, 0)
	}
	if r := (*remote)[uid]; r != nil {
		return r
	}
	return nil
}

// presenceEvent is an m.presence event (Client-Server API §"m.presence").
func presenceEvent(sender string, content any) json.RawMessage {
	b, _ := json.Marshal(map[string]any{"type": "m.presence", "sender": sender, "content": content})
	return b
}

func (p *presence) content(u *account.User) map[string]any {
	state := u.Presence
	if state == "" {
		state = "offline"
	}
	c := map[string]any{"presence": state, "currently_active": false}
	p.mu.Lock()
	var last time.Time
	if up := p.users[u.Localpart]; up != nil {
		last = up.lastActive
	}
	p.mu.Unlock()
	if !last.IsZero() {
		ago := time.Since(last)
		c["last_active_ago"] = ago.Milliseconds()
		c["currently_active"] = state == "online" && ago < 5*time.Minute
	}
	if u.StatusMsg != "" {
		c["status_msg"] = u.StatusMsg
	}
	if u.DisplayName != "" {
		c["displayname"] = u.DisplayName
	}
	if u.AvatarURL != "" {
		c["avatar_url"] = u.AvatarURL
	}
	return c
}

// since returns m.presence events for users who share a room with the
// caller (and the caller) whose presence changed in (from, to].
func (p *presence) since(c *caller, from, to uint64) ([]json.RawMessage, error) {
	users, err := p.accounts.PresenceChanges(from, to)
	if err != nil {
		return nil, err
	}
	out := []json.RawMessage{}
	for _, lp := range users {
		uid := p.accounts.UserID(lp)
		if lp != c.Localpart && !p.rooms.SharesRoom(c.UserID, uid) {
			continue
		}
		u, err := p.accounts.Get(lp)
		if err != nil || u == nil {
			continue
		}
		out = append(out, presenceEvent(uid, p.content(u)))
	}
	return p.remoteSince(c, from, to, out)
}

// remoteSince adds the presence of other servers' users who share a room
// with the caller and whose presence arrived in (from, to].
func (p *presence) remoteSince(c *caller, from, to uint64, out []json.RawMessage) ([]json.RawMessage, error) {
	if p.fed == nil {
		return out, nil
	}
	remote, err := p.fed.RemotePresence(from, to)
	if err != nil {
		return nil, err
	}
	users := make([]string, 0, len(remote))
	for uid := range remote {
		users = append(users, uid)
	}
	sort.Strings(users)
	for _, uid := range users {
		if !p.rooms.SharesRoom(c.UserID, uid) {
			continue
		}
		out = append(out, presenceEvent(uid, remote[uid]))
	}
	return out, nil
}
