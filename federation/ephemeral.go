package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/internal/store"
)

// The outbound side of EDUs (Server-Server API §"Typing Notifications",
// §"Receipts", §"Presence") and what this server keeps of other servers'
// presence. EDUs go through the persistent queue like PDUs, to the other
// servers in the room (for presence: in any room the user is in), never
// to one the room's server ACL denies.

// SendTyping tells the room's other servers that a local user started or
// stopped typing (m.typing). The receivers time it out themselves.
func (s *Service) SendTyping(ctx context.Context, userID, roomID string, typing bool) error {
	content := map[string]any{"room_id": roomID, "user_id": userID, "typing": typing}
	return s.sendEDU(ctx, spec.MTyping, s.roomDestinations(roomID), content)
}

// SendReceipt sends a local user's public read receipt (m.read) to the
// room's other servers (m.receipt). Private receipts never leave.
func (s *Service) SendReceipt(ctx context.Context, userID, roomID, eventID, threadID string) error {
	data := map[string]any{"ts": s.now().UnixMilli()}
	if threadID != "" {
		data["thread_id"] = threadID
	}
	content := map[string]any{roomID: map[string]any{"m.read": map[string]any{
		userID: map[string]any{"event_ids": []string{eventID}, "data": data}}}}
	return s.sendEDU(ctx, spec.MReceipt, s.roomDestinations(roomID), content)
}

// SendPresence announces a local user's presence (m.presence) to every
// server sharing a room with them.
func (s *Service) SendPresence(ctx context.Context, userID, presence, statusMsg string, lastActiveAgo int64, currentlyActive bool) error {
	var dests []string
	rooms, err := s.cfg.Rooms.JoinedRooms(userID)
	if err != nil {
		return err
	}
	for _, roomID := range rooms {
		for _, d := range s.roomDestinations(roomID) {
			if !slices.Contains(dests, d) {
				dests = append(dests, d)
			}
		}
	}
	p := map[string]any{"user_id": userID, "presence": presence, "last_active_ago": max(lastActiveAgo, 0),
		"currently_active": currentlyActive}
	if statusMsg != "" {
		p["status_msg"] = statusMsg
	}
	return s.sendEDU(ctx, spec.MPresence, dests, map[string]any{"push": []any{p}})
}

// roomDestinations lists the other servers joined to a room that its
// server ACL allows.
func (s *Service) roomDestinations(roomID string) []string {
	servers, err := s.cfg.Rooms.JoinedServers(roomID)
	if err != nil {
		return nil
	}
	var out []string
	for _, srv := range servers {
		if srv != string(s.cfg.ServerName) && s.aclAllows(roomID, spec.ServerName(srv)) {
			out = append(out, srv)
		}
	}
	return out
}

func (s *Service) sendEDU(ctx context.Context, typ string, dests []string, content any) error {
	if len(dests) == 0 || s.cfg.Queue == nil {
		return nil
	}
	b, err := json.Marshal(content)
	if err != nil {
		return fmt.Errorf("federation: encode %s: %w", typ, err)
	}
	return s.cfg.Queue.SendEDU(ctx, dests, gomatrixserverlib.EDU{Type: typ, Origin: string(s.cfg.ServerName), Content: b})
}

// ChangeRemotePresence is the change-log kind written when another
// server's user's presence arrives, so /sync long polls wake for it. The
// presence itself is kept in memory (remotePresence).
const ChangeRemotePresence = "presence.remote"

// remotePresence is the last m.presence each remote user's server sent.
// It lives in memory: presence is ephemeral, and after a restart the
// next update (or none, which reads as offline) replaces it. The zero
// value is ready to use.
type remotePresence struct {
	mu    sync.Mutex
	users map[string]presenceEntry
}

type presenceEntry struct {
	presence        string
	statusMsg       string
	lastActive      time.Time
	currentlyActive bool
}

// receivePresence stores each update of the origin's users who share a
// room with a local user, and logs a change so /sync reports it.
func (s *Service) receivePresence(ctx context.Context, origin spec.ServerName, content []byte) error {
	var p struct {
		Push []struct {
			UserID          string `json:"user_id"`
			Presence        string `json:"presence"`
			StatusMsg       string `json:"status_msg"`
			LastActiveAgo   int64  `json:"last_active_ago"`
			CurrentlyActive bool   `json:"currently_active"`
		} `json:"push"`
	}
	if err := json.Unmarshal(content, &p); err != nil {
		return err
	}
	var changed []string
	updates := map[string]map[string]any{}
	for _, u := range p.Push {
		if serverOf(u.UserID) != string(origin) {
			return errNotOrigin
		}
		if u.Presence != "online" && u.Presence != "offline" && u.Presence != "unavailable" {
			continue
		}
		if !s.sharesLocalRoom(u.UserID) {
			continue // nobody here may see it
		}
		s.presence.set(u.UserID, presenceEntry{presence: u.Presence, statusMsg: u.StatusMsg,
			lastActive: s.now().Add(-time.Duration(max(u.LastActiveAgo, 0)) * time.Millisecond), currentlyActive: u.CurrentlyActive})
		changed = append(changed, u.UserID)
		c := map[string]any{"presence": u.Presence, "last_active_ago": max(u.LastActiveAgo, 0), "currently_active": u.CurrentlyActive}
		if u.StatusMsg != "" {
			c["status_msg"] = u.StatusMsg
		}
		updates[u.UserID] = c
	}
	if len(changed) == 0 {
		return nil
	}
	if s.cfg.Presence != nil {
		s.cfg.Presence(ctx, updates) // one write for the EDU, not one per user
	}
	return s.cfg.DB.Update(ctx, func(tx *store.Tx) error {
		for _, uid := range changed {
			if _, err := tx.AppendChange(store.Change{Kind: ChangeRemotePresence, Key: uid}); err != nil {
				return err
			}
		}
		return nil
	})
}

// sharesLocalRoom reports whether a remote user is joined to a room a
// local user is joined to.
func (s *Service) sharesLocalRoom(userID string) bool {
	rooms, _ := s.cfg.Rooms.JoinedRooms(userID)
	for _, r := range rooms {
		if s.cfg.Rooms.HasLocalJoined(r) {
			return true
		}
	}
	return false
}

func (p *remotePresence) set(userID string, e presenceEntry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.users == nil {
		p.users = map[string]presenceEntry{}
	}
	p.users[userID] = e
}

// RemotePresence returns the m.presence content of remote users whose
// presence arrived in the stream range (from, to], or of every remote
// user known when from is 0. Who may see whom is the caller's business.
func (s *Service) RemotePresence(from, to uint64) (map[string]json.RawMessage, error) {
	var users []string
	if from == 0 {
		s.presence.mu.Lock()
		for u := range s.presence.users {
			users = append(users, u)
		}
		s.presence.mu.Unlock()
	} else {
		err := s.cfg.DB.View(func(tx *store.Tx) error {
			return tx.ChangesSince(from, to, func(_ uint64, c store.Change) error {
				if c.Kind == ChangeRemotePresence && !slices.Contains(users, c.Key) {
					users = append(users, c.Key)
				}
				return nil
			})
		})
		if err != nil {
			return nil, err
		}
	}
	out := map[string]json.RawMessage{}
	now := s.now()
	s.presence.mu.Lock()
	defer s.presence.mu.Unlock()
	for _, u := range users {
		e, ok := s.presence.users[u]
		if !ok {
			continue // from before a restart
		}
		c := map[string]any{"presence": e.presence, "last_active_ago": now.Sub(e.lastActive).Milliseconds(),
			"currently_active": e.currentlyActive}
		if e.statusMsg != "" {
			c["status_msg"] = e.statusMsg
		}
		out[u], _ = json.Marshal(c)
	}
	return out, nil
}
