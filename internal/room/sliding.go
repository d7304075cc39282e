package room

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/hearth-chat/hearth/internal/store"
)

// The room list of Simplified Sliding Sync (MSC4186 §"Lists"): every room
// the user is in, was invited to, knocked on or left, with what the list
// filters and the activity order need, read in one snapshot. The HTTP
// layer (localapi/matrix/slidingsync*.go) sorts, filters and windows it.

// bumpTypes are the event types that count as "proper" activity for a
// room's bump_stamp (MSC4186 §"Common fields"), with the unstable names
// clients still send for polls and live location.
var bumpTypes = map[string]bool{
	"m.room.create": true, "m.room.message": true, "m.room.encrypted": true, "m.sticker": true,
	"m.call.invite": true, "m.poll.start": true, "org.matrix.msc3381.poll.start": true,
	"m.beacon_info": true, "org.matrix.msc3672.beacon_info": true,
}

// SlidingEntry is one room of the user's sliding sync room list.
type SlidingEntry struct {
	RoomID     string
	Membership string // join, invite, knock, leave, ban
	// MemberPos is the position of the user's latest membership change.
	MemberPos uint64
	// LastPos is the position of the newest event of the room the user may
	// be sent, at most the request's position: for rooms the user is not
	// joined to, their membership change.
	LastPos uint64
	// BumpStamp is the position of the newest event of a bumpTypes type
	// for joined rooms; the membership change for the others.
	BumpStamp uint64
	Encrypted bool
	// RoomType is the create event's content.type; HasType is false for
	// rooms without one (the filters' null).
	RoomType string
	HasType  bool
	// SelfLeft is a leave the user made themselves (not a kick), which
	// lists leave out unless the connection already sent the room.
	SelfLeft bool
}

// slidingCache keeps, per room, the bump stamp found so far and the
// position the timeline was scanned to, so each request scans only the
// events appended since the last one (no full timeline scans), whether it
// is encrypted, and its ID and type, which never change. Its zero value
// is ready.
type slidingCache struct {
	mu    sync.Mutex
	rooms map[uint64]slidingRoomCache
}

type slidingRoomCache struct {
	roomID        string
	scanned, bump uint64
	encrypted     bool // never unset: an m.room.encryption event stays in the state
	typeKnown     bool
	roomType      string
	hasType       bool
}

// getAll returns the entries of nids, under one lock.
func (c *slidingCache) getAll(nids []uint64) []slidingRoomCache {
	out := make([]slidingRoomCache, len(nids))
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, nid := range nids {
		out[i] = c.rooms[nid]
	}
	return out
}

func (c *slidingCache) put(nid uint64, v slidingRoomCache) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rooms == nil {
		c.rooms = map[uint64]slidingRoomCache{}
	}
	if old, ok := c.rooms[nid]; ok && old.scanned > v.scanned {
		return // a concurrent request scanned further
	}
	c.rooms[nid] = v
}

// SlidingList lists the user's rooms at position now, in no order.
// Forgotten rooms are left out, and invites from users in ignored (the
// user's m.ignored_user_list: Client-Server API §"Ignoring Users") or
// that hideInvite hides (the user's invite filter, MSC4155), when set.
func (e *Engine) SlidingList(userID string, now uint64, ignored map[string]bool, hideInvite func(tx *store.Tx, sender string) bool) ([]SlidingEntry, error) {
	var out []SlidingEntry
	err := e.db.View(func(tx *store.Tx) error {
		ms := memberships(tx, userID)
		nids := make([]uint64, len(ms))
		for i, m := range ms {
			nids[i] = m.RoomNID
		}
		// The rooms' last positions from the index: a room with no event
		// since the last request costs no read of its record.
		lasts, _, _, indexed, err := e.roomPositions(tx, nids)
		if err != nil {
			return err
		}
		cached := e.sliding.getAll(nids)
		out = make([]SlidingEntry, 0, len(ms))
		for i, m := range ms {
			if m.Forgotten || m.Pos > now || m.Membership == "" {
				continue
			}
			lastPos, ok := uint64(0), false
			if indexed {
				lastPos, ok = lasts[i], lasts[i] != 0
			} else {
				lastPos, ok = roomLastPos(tx, m.RoomNID)
			}
			rc, lastPos, err := e.slidingRoom(tx, m.RoomNID, cached[i], lastPos, ok)
			if err != nil {
				return err
			}
			en := SlidingEntry{RoomID: rc.roomID, Membership: m.Membership, MemberPos: m.Pos,
				LastPos: m.Pos, BumpStamp: m.Pos, Encrypted: rc.encrypted, RoomType: rc.roomType, HasType: rc.hasType}
			switch m.Membership {
			case "join":
				en.LastPos = min(lastPos, now)
				if rc.bump != 0 {
					en.BumpStamp = rc.bump
				}
			case "leave":
				if ev, err := e.currentStateEvent(tx, m.RoomNID, "m.room.member", userID); err == nil && ev != nil {
					en.SelfLeft = string(ev.PDU.SenderID()) == userID
				}
			case "ban":
				// A ban of someone who never joined is not listed (MSC4186
				// §"Lists"): the user never saw the room.
				joined := false
				for _, le := range readLog(tx, store.MemberLog, memberLogPrefix(m.RoomNID, userID)) {
					joined = joined || le.value == "join"
				}
				if !joined {
					continue
				}
			case "invite":
				if len(ignored) > 0 || hideInvite != nil {
					if ev, err := e.currentStateEvent(tx, m.RoomNID, "m.room.member", userID); err == nil && ev != nil {
						sender := string(ev.PDU.SenderID())
						if ignored[sender] || hideInvite != nil && hideInvite(tx, sender) {
							continue
						}
					}
				}
			}
			out = append(out, en)
		}
		return nil
	})
	return out, err
}

// slidingRoom returns the room's cache entry brought up to its last event,
// and that event's position, given its cache entry so far and the room
// record's LastPos (ok false when it could not be read). A room with no event since the last request
// costs no read; otherwise the timeline is scanned back only over the
// events appended since the last scan, for the newest bump event, and
// encryption is checked again (the m.room.encryption event is one of
// those events). The room ID and type never change.
func (e *Engine) slidingRoom(tx *store.Tx, nid uint64, rc slidingRoomCache, lastPos uint64, ok bool) (slidingRoomCache, uint64, error) {
	if ok && rc.roomID != "" && rc.scanned >= lastPos && rc.typeKnown {
		return rc, lastPos, nil
	}
	info, err := roomInfoByNID(tx, nid)
	if err != nil {
		return rc, 0, err
	}
	lastPos, rc.roomID = info.LastPos, info.ID
	if !rc.encrypted {
		rc.encrypted = currentStateNID(tx, nid, "m.room.encryption", "") != 0
	}
	if !rc.typeKnown {
		if cn := currentStateNID(tx, nid, "m.room.create", ""); cn != 0 {
			if h, err := storedEventHead(tx, cn); err == nil {
				if h.Content.Type != nil {
					rc.roomType, rc.hasType = *h.Content.Type, true
				}
				rc.typeKnown = true
			}
		}
	}
	if rc.scanned < lastPos {
		from := rc.scanned
		err := scanTimeline(tx, nid, lastPos, Backward, func(pos, evNID uint64) (bool, error) {
			if pos <= from {
				return false, nil
			}
			h, err := storedEventHead(tx, evNID)
			if err != nil {
				return false, err
			}
			if !h.rejected && bumpTypes[h.Type] {
				rc.bump = pos
				return false, nil
			}
			return true, nil
		})
		if err != nil {
			return rc, 0, err
		}
		rc.scanned = lastPos
	}
	e.sliding.put(nid, rc)
	return rc, lastPos, nil
}

// roomLastPos reads a room record's LastPos without decoding the rest.
func roomLastPos(tx *store.Tx, nid uint64) (uint64, bool) {
	_, pos, err := roomHeadIn(tx.Get, nid, false)
	return pos, err == nil
}

// eventHead is what the room list needs of a stored event.
type eventHead struct {
	Type    string `json:"type"`
	Content struct {
		Type *string `json:"type"` // a create event's room type
	} `json:"content"`
	rejected bool
}

// storedEventHead reads an event's type (and a create event's room type)
// from its stored JSON without the full parse loadEvent does: the list
// reads an event per room, a thousand of them on the first request after
// a start, where parsing each with gomatrixserverlib cost most of the
// request.
func storedEventHead(tx *store.Tx, nid uint64) (eventHead, error) {
	var h eventHead
	b := tx.Get(store.Events, store.PutU64(nid))
	if b == nil {
		return h, fmt.Errorf("room: event %d missing", nid)
	}
	ev, err := decodeEvent(nid, b)
	if err != nil {
		return h, err
	}
	h.rejected = ev.Flags&flagRejected != 0
	if typ, ok := jsonString(jsonMember(ev.JSON, "type")); ok {
		h.Type = typ
		if typ != "m.room.create" {
			return h, nil
		}
		if content := jsonMember(ev.JSON, "content"); content != nil && content[0] == '{' {
			raw := jsonMember(content, "type")
			if rt, ok := jsonString(raw); ok {
				h.Content.Type = &rt
				return h, nil
			} else if raw == nil {
				return h, nil
			}
		}
	}
	if err := json.Unmarshal(ev.JSON, &h); err != nil {
		return h, fmt.Errorf("room: event %d: %w", nid, err)
	}
	return h, nil
}

// skipStr skips a string of a record without copying it.
func (r *recordReader) skipStr() {
	if b := r.take(2); b != nil {
		r.take(int(binary.BigEndian.Uint16(b)))
	}
}
