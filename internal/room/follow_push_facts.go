package room

import (
	"sync"

	"github.com/tidwall/gjson"

	"github.com/hearth-chat/hearth/internal/store"
)

// pushFacts are the facts about a room that PushEventsAfter gives every
// event in it: its local members and their names, its name and its power
// levels. Push and the call agent both follow every event, and with many
// busy rooms each of their batches touches many rooms: parsing the power
// levels and walking the members for each was most of what following the
// stream cost. They depend only on the room's current state, so they are
// kept per room while its state snapshot and member counts are the same
// (every change of state makes a new snapshot; a member event stored as
// an outlier, which makes none, changes the counts) and no state event
// of it was redacted since (a redaction rewrites the stored event in
// place: see noteStateRedacted). Shared read-only.
type pushFacts struct {
	snapshot        uint64
	pos             uint64 // the stream position of the view they were read in
	joined, invited int
	members         []PushMember
	names           map[string]string
	name            string
	pl              *powerLevels
}

// pushFactsCache holds the facts of recently followed rooms; the zero
// value is ready to use.
type pushFactsCache struct {
	mu    sync.Mutex
	rooms map[uint64]*pushFacts // room NID → facts
	// redacted is, per room, the stream position of the last redaction
	// of one of its state events: facts read in a view below it are
	// stale. floor stands for the entries dropped when it was full.
	redacted map[uint64]uint64
	floor    uint64
}

// noteStateRedacted records that a redaction at stream position pos (in
// the write that applies it: event NIDs are stream positions) rewrote a
// state event of room roomNID.
// Facts read in a view that includes that write have a position of at
// least pos; any other view's are below it — so a reader that began
// before the commit and stores its facts after it cannot keep them.
func (c *pushFactsCache) noteStateRedacted(roomNID, pos uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.redacted == nil || len(c.redacted) >= maxPushFacts {
		for _, p := range c.redacted {
			c.floor = max(c.floor, p)
		}
		c.redacted = map[uint64]uint64{}
	}
	c.redacted[roomNID] = max(c.redacted[roomNID], pos)
}

// maxPushFacts bounds the cache; it is emptied when full, which costs a
// re-read per room and nothing else.
const maxPushFacts = 1024

// pushFacts returns the facts of the room info describes, read in tx.
func (e *Engine) pushFacts(tx *store.Tx, info *Info) (*pushFacts, error) {
	c := &e.pushRooms
	c.mu.Lock()
	f := c.rooms[info.NID]
	redacted := max(c.redacted[info.NID], c.floor)
	c.mu.Unlock()
	if f != nil && f.snapshot == info.Snapshot && f.joined == info.Joined && f.invited == info.Invited && f.pos >= redacted {
		return f, nil
	}
	f = &pushFacts{snapshot: info.Snapshot, pos: tx.Pos(), joined: info.Joined, invited: info.Invited}
	f.members, f.names = e.localMembers(tx, info)
	if n, _ := e.currentStateEvent(tx, info.NID, "m.room.name", ""); n != nil {
		f.name = gjson.GetBytes(n.PDU.Content(), "name").String()
	}
	var err error
	if f.pl, err = e.powerLevels(tx, info); err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.rooms == nil || len(c.rooms) >= maxPushFacts {
		c.rooms = map[uint64]*pushFacts{}
	}
	c.rooms[info.NID] = f
	c.mu.Unlock()
	return f, nil
}
