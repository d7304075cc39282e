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
// an outlier, which makes none, changes the counts). Shared read-only.
type pushFacts struct {
	snapshot        uint64
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
}

// maxPushFacts bounds the cache; it is emptied when full, which costs a
// re-read per room and nothing else.
const maxPushFacts = 1024

// pushFacts returns the facts of the room info describes, read in tx.
func (e *Engine) pushFacts(tx *store.Tx, info *Info) (*pushFacts, error) {
	c := &e.pushRooms
	c.mu.Lock()
	f := c.rooms[info.NID]
	c.mu.Unlock()
	if f != nil && f.snapshot == info.Snapshot && f.joined == info.Joined && f.invited == info.Invited {
		return f, nil
	}
	f = &pushFacts{snapshot: info.Snapshot, joined: info.Joined, invited: info.Invited}
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
