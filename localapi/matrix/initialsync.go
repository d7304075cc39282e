package matrix

import (
	"encoding/json"
	"net/http"
	"slices"
	"sort"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

// initialSyncLimit is how many recent events a room initialSync returns
// when the client gives no limit, and maxInitialSyncLimit the most it may
// ask for.
const initialSyncLimit, maxInitialSyncLimit = 20, 100

// roomInitialSync serves GET /rooms/{roomId}/initialSync (Client-Server API
// §"GET /rooms/{roomId}/initialSync", deprecated since r0 except for
// peeking, yet Element still calls it when a room is reloaded): the room's
// state, its latest messages, the caller's membership, the directory
// visibility, the caller's room account data, and the members' presence
// and the room's receipts as r0 had them. Everything is read as the caller
// may see it: a member who left sees the room up to their leave, someone
// who never joined only a world_readable room.
func (s *Server) roomInitialSync(w http.ResponseWriter, r *http.Request, c *caller) error {
	roomID := r.PathValue("roomId")
	limit, err := queryInt(r.URL.Query(), "limit", initialSyncLimit)
	if err != nil {
		return err
	}
	limit = min(limit, maxInitialSyncLimit)
	state, err := s.rooms.State(c.UserID, roomID)
	if err != nil {
		return err
	}
	now, _ := s.rooms.Pos()
	page, err := s.rooms.Messages(c.UserID, c.Session, roomID, now, 0, room.Backward, room.EventFilter{Limit: limit})
	if err != nil {
		return err
	}
	chunk := slices.Clone(page.Chunk)
	slices.Reverse(chunk) // oldest first, as a timeline reads
	messages := map[string]any{"chunk": chunk, "end": pageToken(now)}
	if page.More {
		messages["start"] = pageToken(page.End)
	}
	receipts, err := s.rooms.Receipts(c.UserID, roomID)
	if err != nil {
		return err
	}
	public, err := s.rooms.Published(roomID)
	if err != nil {
		return err
	}
	visibility := "private"
	if public {
		visibility = "public"
	}
	resp := map[string]any{"room_id": roomID, "state": state, "messages": messages, "visibility": visibility,
		"account_data": s.roomAccountData(c, roomID), "presence": s.roomPresence(c, roomID),
		"receipts": []any{}}
	if len(receipts) > 0 {
		resp["receipts"] = []any{map[string]any{"type": "m.receipt", "room_id": roomID, "content": receipts}}
	}
	if m := s.membershipIn(c, roomID); m != "" {
		resp["membership"] = m
	}
	matrixerr.WriteJSON(w, http.StatusOK, resp)
	return nil
}

// membershipIn is the caller's membership in the room, if it is one the
// response may name (the spec lists invite, join, leave and ban).
func (s *Server) membershipIn(c *caller, roomID string) string {
	ms, err := s.rooms.Memberships(c.UserID)
	if err != nil {
		return ""
	}
	for _, m := range ms {
		if m.RoomID == roomID {
			switch m.Membership {
			case "invite", "join", "leave", "ban":
				return m.Membership
			}
		}
	}
	return ""
}

// roomAccountData is the caller's account data for the room.
func (s *Server) roomAccountData(c *caller, roomID string) []json.RawMessage {
	_, perRoom, err := s.accounts.AccountDataSince(c.Localpart, 0, 0)
	if err != nil || perRoom[roomID] == nil {
		return []json.RawMessage{}
	}
	return perRoom[roomID]
}

// roomPresence is the presence of the room's joined members, as far as
// it is known: local users always, other servers' users once their server
// has sent it.
func (s *Server) roomPresence(c *caller, roomID string) []json.RawMessage {
	out := []json.RawMessage{}
	members, err := s.rooms.JoinedMembers(c.UserID, roomID)
	if err != nil {
		return out
	}
	users := make([]string, 0, len(members))
	for uid := range members {
		users = append(users, uid)
	}
	sort.Strings(users)
	var remote map[string]json.RawMessage
	for _, uid := range users {
		if content := s.presence.userContent(uid, &remote); content != nil {
			out = append(out, presenceEvent(uid, content))
		}
	}
	return out
}
