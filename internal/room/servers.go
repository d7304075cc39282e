package room

import "github.com/hearth-chat/hearth/internal/store"

// ServersSharingRoomsWith returns the other servers with a user joined to
// a room userID is joined to: where an update about userID's devices must
// go (Server-Server API §"Device Management").
func (e *Engine) ServersSharingRoomsWith(userID string) []string {
	seen := map[string]bool{}
	var out []string
	e.db.View(func(tx *store.Tx) error {
		for _, m := range memberships(tx, userID) {
			if m.Membership != "join" {
				continue
			}
			for _, s := range e.joinedServers(tx, m.RoomNID) {
				if !seen[s] {
					seen[s] = true
					out = append(out, s)
				}
			}
		}
		return nil
	})
	return out
}

// SharesRoomWithLocalUser reports whether userID is joined to a room that
// a user of this server is joined to: only then does this server care
// about (and record) news of userID's devices.
func (e *Engine) SharesRoomWithLocalUser(userID string) bool {
	shared := false
	own := string(e.serverName)
	e.db.View(func(tx *store.Tx) error {
		for _, m := range memberships(tx, userID) {
			if m.Membership != "join" {
				continue
			}
			eachCurrentState(tx, m.RoomNID, "m.room.member\x00", func(_, sk string, _ uint64) error {
				if serverOf(sk) == own && membershipIn(tx, sk, m.RoomNID).Membership == "join" {
					shared = true
					return errStopScan
				}
				return nil
			})
			if shared {
				return nil
			}
		}
		return nil
	})
	return shared
}

// errStopScan ends a state scan early.
var errStopScan = stopScan{}

type stopScan struct{}

func (stopScan) Error() string { return "stop" }
