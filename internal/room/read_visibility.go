package room

import (
	"math"
	"slices"
	"sort"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// history answers which events of one room one user may see, by the
// spec's rules (Client-Server API §"History visibility"), from the room's
// log of history_visibility changes and the user's log of membership
// changes. Both logs are short, so building one per request is cheap.
type history struct {
	hv      []logEntry // history_visibility changes, by position
	members []logEntry // the user's membership changes, by position
}

type logEntry struct {
	pos   uint64
	value string
}

func readLog(tx *store.Tx, bucket, prefix []byte) []logEntry {
	var out []logEntry
	c := tx.Cursor(bucket)
	for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
		out = append(out, logEntry{pos: store.U64(k[len(prefix):]), value: string(v)})
	}
	return out
}

func memberLogPrefix(roomNID uint64, userID string) []byte {
	return store.NIDKey(roomNID, store.Key(userID, ""))
}

// logVisibility records the changes history needs; append calls it for
// every state event.
func logVisibility(tx *store.Tx, roomNID uint64, typ, stateKey, value string, pos uint64) error {
	switch typ {
	case "m.room.member":
		return tx.Put(store.MemberLog, append(memberLogPrefix(roomNID, stateKey), store.PutU64(pos)...), []byte(value))
	case "m.room.history_visibility":
		if stateKey == "" {
			return tx.Put(store.HistoryLog, store.NIDKey(roomNID, store.PutU64(pos)), []byte(value))
		}
	}
	return nil
}

func (e *Engine) history(tx *store.Tx, userID string, roomNID uint64) *history {
	return &history{
		hv:      readLog(tx, store.HistoryLog, store.PutU64(roomNID)),
		members: readLog(tx, store.MemberLog, memberLogPrefix(roomNID, userID)),
	}
}

// at returns the index of the last entry at or before pos, or -1.
func at(log []logEntry, pos uint64) int {
	return sort.Search(len(log), func(i int) bool { return log[i].pos > pos }) - 1
}

// visibilityAt is the history_visibility in force for an event at pos: the
// state before it, "shared" if never set.
func (h *history) visibilityAt(pos uint64) string {
	if i := at(h.hv, pos-1); i >= 0 {
		return h.hv[i].value
	}
	return "shared"
}

// membershipAt is the user's membership at an event: after it, except that
// the user's own leave or ban is judged by the membership before it, so
// users see the event that removed them.
func (h *history) membershipAt(pos uint64) string {
	i := at(h.members, pos)
	if i < 0 {
		return ""
	}
	if h.members[i].pos == pos && (h.members[i].value == "leave" || h.members[i].value == "ban") {
		if i == 0 {
			return ""
		}
		return h.members[i-1].value
	}
	return h.members[i].value
}

// canSee applies the spec's rules to an event at pos.
func (h *history) canSee(pos uint64) bool {
	if i := at(h.members, pos); i >= 0 && h.members[i].pos == pos {
		// An event changing the user's own membership is always theirs to
		// see: one who declines an invite to a room whose history is for
		// members only still sees the leave that moves the room to
		// rooms.leave (sytest "We should see our own leave event when
		// rejecting an invite").
		return true
	}
	hv := h.visibilityAt(pos)
	switch m := h.membershipAt(pos); {
	case hv == "world_readable", m == "join":
		return true
	case m == "invite" && hv == "invited":
		return true
	case hv == "shared":
		// Shared history is open to anyone who joined at any point after.
		for _, e := range h.members[at(h.members, pos)+1:] {
			if e.value == "join" {
				return true
			}
		}
	}
	return false
}

// bounds are the lowest and highest positions that can hold an event the
// user may see, so scans can stop early: before the user's first
// membership only shared or world-readable history is visible, and after
// they left only world-readable history is.
func (h *history) bounds() (lo, hi uint64) {
	lo, hi = 0, math.MaxUint64
	if len(h.members) == 0 {
		return lo, hi
	}
	first, last := h.members[0], h.members[len(h.members)-1]
	if !h.anyVisibility(0, first.pos, "shared", "world_readable") {
		lo = first.pos
	}
	if last.value != "join" && last.value != "invite" && !h.anyVisibility(last.pos, math.MaxUint64, "world_readable") {
		hi = last.pos
	}
	return lo, hi
}

// anyVisibility reports whether one of values is in force anywhere in
// (from, to].
func (h *history) anyVisibility(from, to uint64, values ...string) bool {
	if slices.Contains(values, h.visibilityAt(from+1)) {
		return true
	}
	for _, e := range h.hv {
		if e.pos > from && e.pos < to && slices.Contains(values, e.value) {
			return true
		}
	}
	return false
}

// readable returns a room and what the user may see of it. Users who were
// never in the room, and are not offered world-readable history, are
// refused, as are users who forgot it; an unknown room answers the same way, so room IDs cannot be
// probed.
func (e *Engine) readable(tx *store.Tx, userID, roomID string) (*Info, *history, error) {
	info, err := roomInfo(tx, roomID)
	if err != nil {
		return nil, nil, matrixerr.Forbidden("you are not a member of this room")
	}
	if membershipIn(tx, userID, info.NID).Forgotten {
		// Client-Server API §"Leaving rooms": a forgotten room's history
		// is no longer served to the user.
		return nil, nil, matrixerr.Forbidden("you have forgotten this room")
	}
	h := e.history(tx, userID, info.NID)
	if len(h.members) == 0 && h.visibilityAt(math.MaxUint64) != "world_readable" {
		return nil, nil, matrixerr.Forbidden("you are not a member of this room")
	}
	return info, h, nil
}
