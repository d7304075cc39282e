package room

import "sync"

// The polls a kept response is shared with each checked their user in a
// read transaction of their own (SyncShared): a tenth of the daemon's CPU
// per response in the 50-poll bench, where the response itself is a copy
// (docs/performance.md, "Delivery: shared responses from memory"). Most of
// those users are the ones the last span's check found joined, and a
// span of shape holds no member event, so the finding carries over.

// sharedMembers remembers, per user and room, that the user was found
// joined, since a position at most joinedBy, in a snapshot at position at.
// The membership record changes only with a member event, which takes a
// stream position; so for a span (since, now] of shape (no member event in
// it) with since <= at, the user is still joined at now, since joinedBy.
type sharedMembers struct {
	mu      sync.Mutex
	entries map[userRoom]joinedAt
}

type userRoom struct {
	user string
	room uint64
}

type joinedAt struct{ joinedBy, at uint64 }

// maxSharedMembers bounds the memo; past it, it starts over (a user then
// costs one transaction).
const maxSharedMembers = 1 << 14

func (m *sharedMembers) note(userID string, roomNID, joinedBy, at uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.entries == nil || len(m.entries) >= maxSharedMembers {
		m.entries = map[userRoom]joinedAt{}
	}
	k := userRoom{userID, roomNID}
	if old, ok := m.entries[k]; ok && old.joinedBy == joinedBy {
		at = max(at, old.at)
	}
	m.entries[k] = joinedAt{joinedBy, at}
}

// holds reports whether the user is known joined to the room throughout
// the span (since, now] of shape, and then extends what is known to now.
func (m *sharedMembers) holds(userID string, roomNID, since, now uint64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := userRoom{userID, roomNID}
	e, ok := m.entries[k]
	if !ok || e.joinedBy > since || e.at < since {
		return false
	}
	e.at = max(e.at, now)
	m.entries[k] = e
	return true
}

// SharedFromMemory is SyncShared's check of a user without a transaction:
// true when the user sees the span s as everyone it is shared with (see
// sharedWith), known from an earlier check; false when that is not known,
// and SyncShared must read it. ignored is the user's ignore list.
func (e *Engine) SharedFromMemory(userID string, since, now uint64, s *SpanShape, ignored map[string]bool) bool {
	return s.sendersAllow(userID, ignored) && e.joined.holds(userID, s.roomNID, since, now)
}
