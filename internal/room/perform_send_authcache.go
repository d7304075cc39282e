package room

import (
	"sync"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/hearth-chat/hearth/internal/store"
)

// A message event's auth events are the room's create event, its power
// levels and the sender's membership (Server-Server API §"Auth events
// selection"); reading them loaded and decoded those three stored events
// on every send (a few per cent of the daemon's CPU with 32 senders). They
// depend only on the room's current state, so the provider built from them
// is kept per room, sender and type while that state is the one it was
// read from, by the same test as the push facts (follow_push_facts.go):
// the same state snapshot (every change of current state makes a new
// one), the same member counts (a membership stored as an outlier makes
// none) and no redaction of one of the room's state events since the view
// it was read in (a redaction rewrites the stored event in place). Only
// views of committed data fill it: a write transaction may still be
// rolled back, and with it the snapshot number it took. The provider is
// shared read-only; gomatrixserverlib still checks every event against it.
type authStateCache struct {
	mu      sync.Mutex
	entries map[authStateKey]*authState
}

// authStateKey has no event type: a message event's auth events are the
// create event, the power levels and the sender's membership whatever its
// type (auth rules, "Auth events selection"), so one sender's custom
// types share an entry.
type authStateKey struct {
	room   uint64
	sender string
}

type authState struct {
	snapshot        uint64
	pos             uint64 // the stream position of the view it was read in
	joined, invited int
	provider        *gomatrixserverlib.AuthEvents
}

// maxAuthStates bounds the cache; it is emptied when full.
const maxAuthStates = 4096

// sendAuthProvider is authProvider for the event proto describes, taken
// from the cache when proto is a message event of a state read before.
func (e *Engine) sendAuthProvider(tx *store.Tx, info *Info, proto *gomatrixserverlib.ProtoEvent) (*gomatrixserverlib.AuthEvents, error) {
	if proto.StateKey != nil || keepsContent[proto.Type] {
		return e.authProvider(tx, info.NID, proto)
	}
	key := authStateKey{room: info.NID, sender: proto.SenderID}
	c := &e.sendAuth
	c.mu.Lock()
	s := c.entries[key]
	c.mu.Unlock()
	if s != nil && s.snapshot == info.Snapshot && s.joined == info.Joined && s.invited == info.Invited &&
		s.pos >= e.pushRooms.redactedSince(info.NID) {
		return s.provider, nil
	}
	provider, err := e.authProvider(tx, info.NID, proto)
	if err != nil || tx.Writable() {
		return provider, err
	}
	s = &authState{snapshot: info.Snapshot, pos: tx.Pos(), joined: info.Joined, invited: info.Invited, provider: provider}
	c.mu.Lock()
	if c.entries == nil || len(c.entries) >= maxAuthStates {
		c.entries = map[authStateKey]*authState{}
	}
	c.entries[key] = s
	c.mu.Unlock()
	return provider, nil
}

// redactedSince is the stream position below which views of room roomNID
// may hold a state event that has since been redacted.
func (c *pushFactsCache) redactedSince(roomNID uint64) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return max(c.redacted[roomNID], c.floor)
}
