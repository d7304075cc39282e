package matrix

import (
	"encoding/json"
	"slices"

	"github.com/hearth-chat/hearth/internal/room"
)

// syncE2EE fills the end-to-end encryption parts of a /sync response
// (Client-Server API §"End-to-end encryption": to_device, device_lists,
// device_one_time_keys_count, device_unused_fallback_key_types) for the
// caller's device between two tokens, and reports whether any of it is
// news that should end a long poll.
//
// device_lists.changed holds users sharing a room with the caller (and the
// caller) whose devices or keys changed, plus users who started sharing a
// room: members who joined a room the caller is in, and everyone in a room
// the caller joined. device_lists.left holds users who left, or were in a
// room the caller left, and now share no room with the caller. Membership
// changes are read from the rooms section just built, so they follow the
// same positions as the timelines.
//
// The to-device messages and key counts are those r read in the rooms
// section's transaction (syncReads); rooms is that section as the engine
// gave it, which says which member events lazy loading added.
func (s *Server) syncE2EE(c *caller, since, now syncToken, resp *syncResponse, r *syncReads, rooms *room.SyncRooms) (bool, error) {
	if s.keys == nil {
		return false, nil
	}
	news := r.toDeviceNews
	resp.ToDevice.Events = r.toDevice
	resp.OTKCounts, resp.FallbackKeyTypes = r.otk, r.fallback
	if since.pos == 0 {
		return news, nil // an initial sync has no device-list changes
	}
	// Only member events can change device_lists: a room without one is
	// left out rather than copied (most responses carry a message alone).
	joined, left := map[string][]any{}, [][]any{}
	for roomID, jr := range resp.Rooms.Join {
		var lazy []string
		if rj := rooms.Join[roomID]; rj != nil {
			lazy = rj.LazyMembers
		}
		if evs := memberEvents(except(jr.stateEvents(), lazy), jr.Timeline.Events); evs != nil {
			joined[roomID] = evs
		}
	}
	for _, lr := range resp.Rooms.Leave {
		if evs := memberEvents(lr.stateEvents(), lr.Timeline.Events); evs != nil {
			left = append(left, evs)
		}
	}
	changed, gone, err := s.deviceListChanges(c, since.pos, now.pos, joined, left)
	if err != nil {
		return false, err
	}
	resp.DeviceLists = map[string]any{"changed": changed, "left": gone}
	return news || len(changed) > 0 || len(gone) > 0, nil
}

// deviceListChanges works out device_lists between two positions: users
// sharing a room with the caller (and the caller) whose devices or keys
// changed, and, from the member events of the rooms section (joined: room
// ID → state and timeline events; left: the same for rooms the caller
// left), users who started or stopped sharing a room.
func (s *Server) deviceListChanges(c *caller, since, now uint64, joined map[string][]any, left [][]any) ([]string, []string, error) {
	changedSet, leftSet := map[string]bool{}, map[string]bool{}
	users, err := s.changedDeviceUsers(since, now)
	if err != nil {
		return nil, nil, err
	}
	for _, u := range users {
		if u == c.UserID || s.rooms.SharesRoom(c.UserID, u) {
			changedSet[u] = true
		}
	}
	for roomID, evs := range joined {
		for _, ev := range evs {
			userID, membership := memberChange(ev)
			switch {
			case userID == "":
			case userID == c.UserID && membership == "join":
				// The caller joined: everyone already there is new to them.
				members, err := s.rooms.JoinedMembers(c.UserID, roomID)
				if err == nil {
					for u := range members {
						changedSet[u] = true
					}
				}
			case membership == "join":
				changedSet[userID] = true
			case membership == "leave" || membership == "ban":
				leftSet[userID] = true
			}
		}
	}
	for _, evs := range left {
		for _, ev := range evs {
			// Everyone joined to a room the caller left may be gone from
			// the caller's rooms, whenever they joined.
			if userID, m := membershipOf(ev); userID != "" && m == "join" {
				leftSet[userID] = true
			}
		}
	}
	changed, gone := []string{}, []string{}
	for u := range leftSet {
		if u != c.UserID && !s.rooms.SharesRoom(c.UserID, u) {
			gone = append(gone, u)
			delete(changedSet, u)
		}
	}
	delete(changedSet, "")
	for u := range changedSet {
		changed = append(changed, u)
	}
	// Sorted, so that equal answers are equal bytes (sync_shared.go).
	slices.Sort(changed)
	slices.Sort(gone)
	return changed, gone, nil
}

// memberEvents returns the events of lists that memberChange may find a
// membership in (every event not shown as a room.ClientEvent, whose type
// only memberChange can read), in order, or nil when there is none.
func memberEvents(lists ...[]any) []any {
	var out []any
	for _, l := range lists {
		for _, ev := range l {
			switch e := ev.(type) {
			case room.ClientEvent:
				if e.Type != "m.room.member" {
					continue
				}
			case *room.ClientEvent:
				if e == nil || e.Type != "m.room.member" {
					continue
				}
			}
			out = append(out, ev)
		}
	}
	return out
}

// except returns evs without the events whose IDs are in ids (evs
// itself when ids is empty). An event event_fields left without its ID
// stays.
func except(evs []any, ids []string) []any {
	if len(ids) == 0 {
		return evs
	}
	out := make([]any, 0, len(evs))
	for _, ev := range evs {
		if id := clientEventOf(ev).EventID; id == "" || !slices.Contains(ids, id) {
			out = append(out, ev)
		}
	}
	return out
}

// clientEventOf is an event as it appears in a sync response (a
// room.ClientEvent, or a map when event_fields projected it) as a
// room.ClientEvent, with only the fields it kept.
func clientEventOf(ev any) room.ClientEvent {
	switch e := ev.(type) {
	case room.ClientEvent:
		return e
	case *room.ClientEvent:
		if e != nil {
			return *e
		}
		return room.ClientEvent{}
	}
	b, _ := json.Marshal(ev)
	var e room.ClientEvent
	json.Unmarshal(b, &e)
	return e
}

// membershipOf returns the state key and membership of an m.room.member
// event as it appears in a sync response, or "" for any other event.
func membershipOf(ev any) (string, string) {
	return memberOf(clientEventOf(ev))
}

func memberOf(e room.ClientEvent) (string, string) {
	if e.Type != "m.room.member" || e.StateKey == nil {
		return "", ""
	}
	return *e.StateKey, membership(e.Content)
}

// memberChange is membershipOf for an event that changes a membership,
// "" for one that keeps it (a profile change: nobody joined or left).
func memberChange(ev any) (string, string) {
	e := clientEventOf(ev) // once: for an event_fields projection it is a JSON round trip
	userID, now := memberOf(e)
	if userID == "" {
		return "", ""
	}
	prev, _ := json.Marshal(e.Unsigned["prev_content"])
	if now == membership(prev) {
		return "", ""
	}
	return userID, now
}

func membership(content json.RawMessage) string {
	var c struct {
		Membership string `json:"membership"`
	}
	json.Unmarshal(content, &c)
	return c.Membership
}
