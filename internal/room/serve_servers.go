package room

import "github.com/hearth-chat/hearth/internal/store"

// ServersSharingRoomsWith returns the other servers with a user joined to
// a room userID is joined to: where an update about userID's devices must
// go (Server-Server API §"Device Management").
func (e *Engine) ServersSharingRoomsWith(userID string) []string {
	var out []string
	e.db.View(func(tx *store.Tx) error {
		out = e.serversIn(tx, e.joinedRooms(tx, userID))
		return nil
	})
	return out
}

// SharesRoomWithLocalUser reports whether userID is joined to a room that
// a user of this server is joined to: only then does this server care
// about (and record) news of userID's devices.
func (e *Engine) SharesRoomWithLocalUser(userID string) bool {
	shared := false
	e.db.View(func(tx *store.Tx) error {
		for _, nid := range e.joinedRooms(tx, userID) {
			if e.localJoined(tx, nid) {
				shared = true
				return nil
			}
		}
		return nil
	})
	return shared
}

// joinedRooms lists the rooms userID is joined to, by NID.
func (e *Engine) joinedRooms(tx *store.Tx, userID string) []uint64 {
	var out []uint64
	for _, m := range memberships(tx, userID) {
		if m.Membership == "join" {
			out = append(out, m.RoomNID)
		}
	}
	return out
}
