package room

import (
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
// events appended since the last one (no full timeline scans), and the
// room type, which never changes. Its zero value is ready.
type slidingCache struct {
	mu    sync.Mutex
	rooms map[uint64]slidingRoomCache
}

type slidingRoomCache struct {
	scanned, bump uint64
	typeKnown     bool
	roomType      string
	hasType       bool
}

func (c *slidingCache) get(nid uint64) slidingRoomCache {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rooms[nid]
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
// Forgotten rooms are left out.
func (e *Engine) SlidingList(userID string, now uint64) ([]SlidingEntry, error) {
	var out []SlidingEntry
	err := e.db.View(func(tx *store.Tx) error {
		for _, m := range memberships(tx, userID) {
			if m.Forgotten || m.Pos > now || m.Membership == "" {
				continue
			}
			info, err := roomInfoByNID(tx, m.RoomNID)
			if err != nil {
				return err
			}
			en := SlidingEntry{RoomID: info.ID, Membership: m.Membership, MemberPos: m.Pos,
				LastPos: m.Pos, BumpStamp: m.Pos}
			en.Encrypted = currentStateNID(tx, info.NID, "m.room.encryption", "") != 0
			rc, err := e.slidingRoom(tx, info)
			if err != nil {
				return err
			}
			en.RoomType, en.HasType = rc.roomType, rc.hasType
			switch m.Membership {
			case "join":
				en.LastPos = min(info.LastPos, now)
				if rc.bump != 0 {
					en.BumpStamp = rc.bump
				}
			case "leave":
				if ev, err := e.currentStateEvent(tx, info.NID, "m.room.member", userID); err == nil && ev != nil {
					en.SelfLeft = string(ev.PDU.SenderID()) == userID
				}
			}
			out = append(out, en)
		}
		return nil
	})
	return out, err
}

// slidingRoom brings the room's cache entry up to its last event: the
// newest bump event, scanning back only over events appended since the
// last scan, and the room type from the create event.
func (e *Engine) slidingRoom(tx *store.Tx, info *Info) (slidingRoomCache, error) {
	rc := e.sliding.get(info.NID)
	if rc.scanned >= info.LastPos && rc.typeKnown {
		return rc, nil
	}
	if !rc.typeKnown {
		if nid := currentStateNID(tx, info.NID, "m.room.create", ""); nid != 0 {
			if h, err := storedEventHead(tx, nid); err == nil {
				if h.Content.Type != nil {
					rc.roomType, rc.hasType = *h.Content.Type, true
				}
				rc.typeKnown = true
			}
		}
	}
	if rc.scanned < info.LastPos {
		from := rc.scanned
		err := scanTimeline(tx, info.NID, info.LastPos, Backward, func(pos, nid uint64) (bool, error) {
			if pos <= from {
				return false, nil
			}
			h, err := storedEventHead(tx, nid)
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
			return rc, err
		}
		rc.scanned = info.LastPos
	}
	e.sliding.put(info.NID, rc)
	return rc, nil
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
