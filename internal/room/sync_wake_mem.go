package room

import "sync"

// memberRooms remembers, per user, the rooms in which the user's last
// /sync build found a membership, so that SyncConcerns can answer from
// memory for the usual wake-up of a long poll: a message just committed
// in a room the user is in, whose parsed event the pduCache holds. The
// memory only ever answers "concerns": a stale entry (a room left since)
// costs one response build that finds nothing, after which the build
// refreshes the entry; a room missing from it sends SyncConcerns to the
// store as before. Without it, each of a room's 50 woken polls opened a
// read transaction to learn what the publication that woke them already
// said (docs/performance.md, "Per-response CPU, second cut").
type memberRooms struct {
	// mu is read-locked by every woken poll at once (50 of a room after
	// each message) and write-locked only when a user's rooms change.
	mu    sync.RWMutex
	users map[string]map[string]struct{}
}

// maxMemberRoomsUsers bounds the memory; past it the map starts over, and
// users get their entries back at their next build.
const maxMemberRoomsUsers = 4096

// set replaces userID's rooms with those of a build just made.
func (m *memberRooms) set(userID string, rooms map[string]struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.users == nil || len(m.users) >= maxMemberRoomsUsers {
		m.users = map[string]map[string]struct{}{}
	}
	m.users[userID] = rooms
}

// same reports whether userID's remembered rooms are exactly ids, so a
// build that found the same rooms (nearly every one) allocates nothing.
func (m *memberRooms) same(userID string, ids []string) bool {
	rooms := m.get(userID)
	if rooms == nil || len(rooms) != len(ids) {
		return false
	}
	for _, id := range ids {
		if _, ok := rooms[id]; !ok {
			return false
		}
	}
	return true
}

// note records the rooms of a build just made, unless they are the same.
func (m *memberRooms) note(userID string, ids []string) {
	if m.same(userID, ids) {
		return
	}
	rooms := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		rooms[id] = struct{}{}
	}
	m.set(userID, rooms)
}

// get returns userID's rooms as last set; the map is never written after
// set, so callers read it without the lock.
func (m *memberRooms) get(userID string) map[string]struct{} {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.users[userID]
}

// concernsFromMemory reports whether a position in (from, to] is an event,
// held parsed in the pduCache, of a room userID's last build found the
// user in. False means only "not known here".
func (e *Engine) concernsFromMemory(userID string, from, to uint64) bool {
	rooms := e.memberOf.get(userID)
	if len(rooms) == 0 {
		return false
	}
	for p := from + 1; p <= to; p++ {
		if id, ok := e.pdus.roomOf(p); ok {
			if _, in := rooms[id]; in {
				return true
			}
		}
	}
	return false
}

// roomOf returns the room of the event cached under nid, without the
// event ID check get makes: concernsFromMemory may take a wrong room from
// an entry a rolled-back commit left, which costs a build, never an
// update.
func (c *pduCache) roomOf(nid uint64) (string, bool) {
	if c == nil {
		return "", false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	gen := c.young
	e, ok := gen[nid]
	if !ok {
		gen = c.old
		e, ok = gen[nid]
	}
	if !ok || e.pdu == nil {
		return "", false
	}
	if e.roomID == "" {
		e.roomID = e.pdu.RoomID().String()
		gen[nid] = e
	}
	return e.roomID, true
}
