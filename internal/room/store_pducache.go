package room

import (
	"sync"

	"github.com/matrix-org/gomatrixserverlib"
)

// pduCache keeps recently parsed events so the auth state of every send and
// the timeline of every woken /sync are not re-parsed from JSON each time.
// It is keyed by NID but trusted only when the stored record still carries
// the same event ID: a NID taken in a transaction that was rolled back can
// be reused by another event, and a redaction replaces the stored JSON.
//
// Two generations make an approximate LRU with no per-hit bookkeeping: when
// the young map is full it becomes the old one and the old one is dropped.
type pduCache struct {
	mu         sync.Mutex
	young, old map[uint64]cachedPDU
	size       int
}

type cachedPDU struct {
	id       string
	redacted bool
	pdu      gomatrixserverlib.PDU
	// roomID is the event's room once roomOf has parsed it: every long
	// poll a message wakes asks for it, and PDU.RoomID parses and
	// validates the ID on each call.
	roomID string
}

func newPDUCache(size int) *pduCache {
	return &pduCache{young: map[uint64]cachedPDU{}, old: map[uint64]cachedPDU{}, size: size}
}

func (c *pduCache) get(nid uint64, id string, redacted bool) gomatrixserverlib.PDU {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.young[nid]
	if !ok {
		if e, ok = c.old[nid]; ok {
			c.putLocked(nid, e)
		}
	}
	if !ok || e.id != id || e.redacted != redacted {
		return nil
	}
	return e.pdu
}

func (c *pduCache) put(nid uint64, id string, redacted bool, pdu gomatrixserverlib.PDU) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(nid, cachedPDU{id: id, redacted: redacted, pdu: pdu})
}

func (c *pduCache) putLocked(nid uint64, e cachedPDU) {
	if len(c.young) >= c.size {
		c.old, c.young = c.young, make(map[uint64]cachedPDU, c.size)
	}
	c.young[nid] = e
}
