package room

import (
	"github.com/hearth-chat/hearth/internal/store"
)

// serverCanSee applies history visibility to another server (Server-Server
// API §"Retrieving events": a server is only given the events its users
// could see): shared and world_readable history goes to any server in the
// room; invited history to a server with a user invited or joined at the
// event; joined history to a server with a user joined at it. pos is the
// event's place in this server's timeline, where the visibility and
// membership logs are kept.
func (e *Engine) serverCanSee(tx *store.Tx, roomNID uint64, server string, pos uint64) bool {
	h := &history{hv: readLog(tx, store.HistoryLog, store.PutU64(roomNID))}
	switch h.visibilityAt(pos) {
	case "world_readable", "shared":
		return true
	case "invited":
		return e.serverMembership(tx, roomNID, server, pos, "join", "invite")
	}
	return e.serverMembership(tx, roomNID, server, pos, "join")
}

// serverMembership reports whether a user of server had one of the given
// memberships at pos.
func (e *Engine) serverMembership(tx *store.Tx, roomNID uint64, server string, pos uint64, want ...string) bool {
	found := false
	eachCurrentState(tx, roomNID, "m.room.member\x00", func(_, sk string, _ uint64) error {
		if serverOf(sk) != server {
			return nil
		}
		h := &history{members: readLog(tx, store.MemberLog, memberLogPrefix(roomNID, sk))}
		m := h.membershipAt(pos)
		for _, w := range want {
			if m == w {
				found = true
				return errStop
			}
		}
		return nil
	})
	return found
}
