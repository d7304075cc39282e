package matrix

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

// presence is basic presence (Client-Server API §"Presence"): the state a
// user sets is stored and announced through the change log; when they were
// last active is kept in memory, since writing it on every request would
// cost an fsync each.
type presence struct {
	accounts *account.Accounts
	rooms    *room.Engine
	mu       sync.Mutex
	active   map[string]time.Time // localpart → last request
	// fed announces local users' presence to other servers and knows
	// theirs; nil while federation is off (set by SetFederation).
	fed Federation
}

func newPresence(a *account.Accounts, r *room.Engine) *presence {
	return &presence{accounts: a, rooms: r, active: map[string]time.Time{}}
}

// touch records activity and, if the state differs, stores the new state.
func (p *presence) touch(ctx context.Context, c *caller, state string) {
	p.mu.Lock()
	p.active[c.Localpart] = time.Now()
	p.mu.Unlock()
	u, err := p.accounts.Get(c.Localpart)
	if err != nil || u == nil || u.Presence == state {
		return
	}
	if p.accounts.SetPresence(ctx, c.Localpart, state, u.StatusMsg) == nil {
		p.announce(ctx, c.UserID, state, u.StatusMsg)
	}
}

// announce sends a local user's new presence over federation
// (Server-Server API §"Presence"); a failure costs only the update.
func (p *presence) announce(ctx context.Context, userID, state, statusMsg string) {
	if p.fed == nil {
		return
	}
	if err := p.fed.SendPresence(context.WithoutCancel(ctx), userID, state, statusMsg, 0, state == "online"); err != nil {
		slog.Info("presence: federation send failed", "user", userID, "err", err)
	}
}

func (p *presence) content(u *account.User) map[string]any {
	state := u.Presence
	if state == "" {
		state = "offline"
	}
	c := map[string]any{"presence": state, "currently_active": false}
	p.mu.Lock()
	last, ok := p.active[u.Localpart]
	p.mu.Unlock()
	if ok {
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
		b, _ := json.Marshal(map[string]any{"type": "m.presence", "sender": uid, "content": p.content(u)})
		out = append(out, b)
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
		b, _ := json.Marshal(map[string]any{"type": "m.presence", "sender": uid, "content": remote[uid]})
		out = append(out, b)
	}
	return out, nil
}

func (s *Server) getPresence(w http.ResponseWriter, r *http.Request, c *caller) {
	uid := r.PathValue("userId")
	lp := s.accounts.Localpart(uid)
	if lp != c.Localpart && !s.rooms.SharesRoom(c.UserID, uid) {
		matrixerr.Write(w, matrixerr.Forbidden("you do not share a room with this user"))
		return
	}
	if s.fed != nil && serverOf(uid) != "" && serverOf(uid) != s.accounts.ServerName() {
		// Another server's user: what their server last sent.
		remote, err := s.fed.RemotePresence(0, 0)
		if err != nil || remote[uid] == nil {
			matrixerr.Write(w, matrixerr.NotFound("no presence known for this user"))
			return
		}
		writeJSON(w, remote[uid])
		return
	}
	u, err := s.accounts.Get(lp)
	if err != nil || u == nil {
		matrixerr.Write(w, matrixerr.NotFound("unknown user"))
		return
	}
	writeJSON(w, s.presence.content(u))
}

func (s *Server) putPresence(w http.ResponseWriter, r *http.Request, c *caller) {
	if r.PathValue("userId") != c.UserID {
		matrixerr.Write(w, matrixerr.Forbidden("you may only set your own presence"))
		return
	}
	var req struct {
		Presence  string `json:"presence"`
		StatusMsg string `json:"status_msg"`
	}
	if err := readJSON(r, &req); err != nil {
		matrixerr.Write(w, err)
		return
	}
	if req.Presence != "online" && req.Presence != "offline" && req.Presence != "unavailable" {
		matrixerr.Write(w, matrixerr.InvalidParam("presence must be online, offline or unavailable"))
		return
	}
	if err := s.accounts.SetPresence(r.Context(), c.Localpart, req.Presence, req.StatusMsg); err != nil {
		matrixerr.Write(w, err)
		return
	}
	s.presence.announce(r.Context(), c.UserID, req.Presence, req.StatusMsg)
	writeJSON(w, struct{}{})
}

// clientActiveFor is how recently a client must have synced for the user
// to count as at a client.
const clientActiveFor = 60 * time.Second

// ClientActive reports whether one of the user's clients synced within the
// last minute: a client in use shows its own notifications, so the daemon's
// desktop notifications stay quiet (and so do phones' through pushers).
func (s *Server) ClientActive(userID string) bool {
	s.presence.mu.Lock()
	defer s.presence.mu.Unlock()
	last, ok := s.presence.active[s.accounts.Localpart(userID)]
	return ok && time.Since(last) < clientActiveFor
}
