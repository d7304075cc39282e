package matrix

import (
	"context"
	"encoding/json"
	"net/http"
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
	p.accounts.SetPresence(ctx, c.Localpart, state, u.StatusMsg)
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
	return out, nil
}

func (s *Server) getPresence(w http.ResponseWriter, r *http.Request, c *caller) {
	uid := r.PathValue("userId")
	lp := s.accounts.Localpart(uid)
	if lp != c.Localpart && !s.rooms.SharesRoom(c.UserID, uid) {
		matrixerr.Write(w, matrixerr.Forbidden("you do not share a room with this user"))
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
