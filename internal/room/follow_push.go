package room

import (
	"strings"

	"github.com/tidwall/gjson"

	"github.com/hearth-chat/hearth/internal/store"
)

// This file is the room engine's read API for push (package push): what
// rule evaluation needs to know about each new event and the room it is
// in, and the read receipts that end a user's unread notifications. It
// reads only; nothing here writes room data.

// PushMember is a local member who may be notified of an event.
type PushMember struct {
	UserID      string
	DisplayName string // their m.room.member displayname, "" if none
}

// PushEvent is one new room event with the room facts push rules read
// (Client-Server API §"Push Rules": room_member_count,
// contains_display_name, sender_notification_permission).
type PushEvent struct {
	Pos        uint64
	RoomID     string
	Event      ClientEvent // with room_id, as push gateways and /notifications show it
	ThreadRoot string      // "main" or the thread root's event ID
	RoomName   string
	// SenderName is the sender's display name in the room.
	SenderName string
	// Members is the joined member count; Local the joined local members
	// other than the sender.
	Members int
	Local   []PushMember
	// SenderLevel and RoomNotifLevel are the sender's power level and the
	// level notifications.room requires.
	SenderLevel, RoomNotifLevel int64
}

// PushEventsAfter calls fn for each timeline event with from < pos ≤ to in
// stream order, skipping rejected events and outliers. Membership and
// names are the room's current ones, which is what they were at the event
// for a consumer that follows the stream closely.
func (e *Engine) PushEventsAfter(from, to uint64, fn func(*PushEvent) error) error {
	return e.PushEventsOfType(from, to, nil, fn)
}

// PushEventsOfType is PushEventsAfter for the events whose type wanted
// accepts (nil: all). A follower that acts on a few types (the call agent:
// memberships, calls, encrypted events) skips every other event on its
// type alone, before the event is parsed and given its room's facts.
func (e *Engine) PushEventsOfType(from, to uint64, wanted func(evType string) bool, fn func(*PushEvent) error) error {
	return e.db.View(func(tx *store.Tx) error {
		type roomFacts struct {
			info *Info
			*pushFacts
			senders map[string]string // names of senders not in names, read once
		}
		rooms := map[uint64]*roomFacts{}
		return eachPushable(tx, from, to, func(pos uint64, v []byte) error {
			if wanted != nil && !wanted(recordType(pos, v)) {
				return nil
			}
			ev, err := e.loadEvent(tx, pos)
			if err != nil {
				return err
			}
			rf := rooms[ev.RoomNID]
			if rf == nil || ev.PDU.StateKey() != nil {
				// State events can change members, names and power: re-read.
				info, err := roomInfoByNID(tx, ev.RoomNID)
				if err != nil {
					return err
				}
				facts, err := e.pushFacts(tx, info) // follow_push_facts.go
				if err != nil {
					return err
				}
				rf = &roomFacts{info: info, pushFacts: facts}
				rooms[ev.RoomNID] = rf
			}
			sender := string(ev.PDU.SenderID())
			pe := &PushEvent{Pos: pos, RoomID: rf.info.ID, Event: e.clientEvent(tx, ev, ClientView{}),
				ThreadRoot: threadOf(ev), RoomName: rf.name, Members: rf.info.Joined}
			pe.SenderName = rf.names[sender]
			if pe.SenderName == "" {
				// A remote sender's name: read once per sender in this
				// walk, whose read transaction sees one current state.
				name, ok := rf.senders[sender]
				if !ok {
					name = senderDisplayName(tx, rf.info.NID, sender)
					if rf.senders == nil {
						rf.senders = map[string]string{}
					}
					rf.senders[sender] = name
				}
				pe.SenderName = name
			}
			for _, m := range rf.members {
				if m.UserID != sender {
					pe.Local = append(pe.Local, m)
				}
			}
			pe.setLevels(rf.pl, sender)
			return fn(pe)
		})
	})
}

// localMembers lists the room's joined local members with their display
// names. The members index says who is joined; the member event (read raw,
// without parsing the whole event) gives the name.
func (e *Engine) localMembers(tx *store.Tx, info *Info) ([]PushMember, map[string]string) {
	var out []PushMember
	names := map[string]string{}
	eachCurrentState(tx, info.NID, "m.room.member", func(_, sk string, nid uint64) error {
		if serverOf(sk) != string(e.serverName) || membershipIn(tx, sk, info.NID).Membership != "join" {
			return nil
		}
		m := PushMember{UserID: sk}
		if b := tx.Get(store.Events, store.PutU64(nid)); b != nil {
			if ev, err := decodeEvent(nid, b); err == nil {
				m.DisplayName = gjson.GetBytes(ev.JSON, "content.displayname").String()
			}
		}
		names[sk] = m.DisplayName
		out = append(out, m)
		return nil
	})
	return out, names
}

func senderDisplayName(tx *store.Tx, roomNID uint64, userID string) string {
	nid := currentStateNID(tx, roomNID, "m.room.member", userID)
	if b := tx.Get(store.Events, store.PutU64(nid)); nid != 0 && b != nil {
		if ev, err := decodeEvent(nid, b); err == nil {
			return gjson.GetBytes(ev.JSON, "content.displayname").String()
		}
	}
	return ""
}

// ReadUpTo is ReadUpToIn in a read transaction of its own.
func (e *Engine) ReadUpTo(userID, roomID string) (map[string]uint64, error) {
	var out map[string]uint64
	err := e.db.View(func(tx *store.Tx) error {
		out = ReadUpToIn(tx, userID, roomID)
		return nil
	})
	return out, err
}

// PushEventAt returns the event at a stream position as a client event
// with its room ID, for /notifications.
func (e *Engine) PushEventAt(pos uint64) (*ClientEvent, error) {
	var out *ClientEvent
	err := e.db.View(func(tx *store.Tx) error {
		ev, err := e.loadEvent(tx, pos)
		if err != nil {
			return err
		}
		ce := e.clientEvent(tx, ev, ClientView{})
		out = &ce
		return nil
	})
	return out, err
}

// PushEventsFor is PushEventsAfter for one local user: the events with
// from < pos ≤ to in rooms the user is joined to and that others sent,
// with Local holding only that user. /sync uses it to count events the
// push evaluator has not reached yet, so counts never trail the timeline;
// it runs for every woken long poll, so it skips what counting does not
// need: RoomName and SenderName stay empty, and power levels are read
// only for events that mention the room.
func (e *Engine) PushEventsFor(userID string, from, to uint64, fn func(*PushEvent) error) error {
	return e.db.View(func(tx *store.Tx) error {
		type roomFacts struct {
			info   *Info
			joined bool
			me     PushMember
			pl     *powerLevels
		}
		rooms := map[uint64]*roomFacts{}
		return eachPushable(tx, from, to, func(pos uint64, v []byte) error {
			ev, err := decodeEvent(pos, v)
			if err != nil {
				return err
			}
			rf := rooms[ev.RoomNID]
			if rf == nil {
				rf = &roomFacts{joined: membershipIn(tx, userID, ev.RoomNID).Membership == "join"}
				rooms[ev.RoomNID] = rf
				if rf.joined {
					if rf.info, err = roomInfoByNID(tx, ev.RoomNID); err != nil {
						return err
					}
					rf.me = PushMember{UserID: userID, DisplayName: senderDisplayName(tx, ev.RoomNID, userID)}
				}
			}
			if !rf.joined {
				return nil
			}
			full, err := e.loadEvent(tx, pos)
			if err != nil {
				return err
			}
			sender := string(full.PDU.SenderID())
			if sender == userID {
				return nil
			}
			pe := &PushEvent{Pos: pos, RoomID: rf.info.ID, Event: e.clientEvent(tx, full, ClientView{}),
				ThreadRoot: threadOf(full), Members: rf.info.Joined, Local: []PushMember{rf.me}}
			// Power levels take a parse; only room mentions need them (the
			// sender_notification_permission of the predefined rules).
			if rf.pl == nil && mentionsRoom(full.PDU.Content()) {
				if rf.pl, err = e.powerLevels(tx, rf.info); err != nil {
					return err
				}
			}
			pe.setLevels(rf.pl, sender)
			return fn(pe)
		})
	})
}

// eachPushable calls fn with the position and record of each event in
// (from, to] that push considers: not rejected, not an outlier.
func eachPushable(tx *store.Tx, from, to uint64, fn func(pos uint64, record []byte) error) error {
	return eachEventIn(tx, from, to, func(pos uint64, v []byte) error {
		if len(v) == 0 || v[0]&(flagRejected|flagOutlier|flagHistorical) != 0 {
			return nil
		}
		return fn(pos, v)
	})
}

// setLevels records the sender's power level and the level @room needs
// (notifications.room, 50 by default) for sender_notification_permission.
func (pe *PushEvent) setLevels(pl *powerLevels, sender string) {
	pe.RoomNotifLevel = 50
	if pl == nil {
		return
	}
	pe.SenderLevel = pl.level(sender)
	if l, ok := pl.Notifications["room"]; ok {
		pe.RoomNotifLevel = l
	}
}

// mentionsRoom says whether content mentions the whole room, the only
// case in which the predefined rules read power levels.
func mentionsRoom(content []byte) bool {
	return gjson.GetBytes(content, "m\\.mentions.room").Bool() ||
		strings.Contains(gjson.GetBytes(content, "body").String(), "@room")
}

// recordType is the type of the event in a stored record, read without
// parsing the event ("" if the record cannot be read).
func recordType(pos uint64, v []byte) string {
	ev, err := decodeEvent(pos, v)
	if err != nil {
		return ""
	}
	return gjson.GetBytes(ev.JSON, "type").String()
}
