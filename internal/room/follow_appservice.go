package room

import (
	"github.com/tidwall/gjson"

	"github.com/hearth-chat/hearth/internal/store"
)

// This file is the room engine's read API for consumers that follow the
// stream and decide per room rather than per member (application
// services): the events alone, and a room's local joined members and
// canonical alias read from the indexes. PushEventsAfter also reads
// every member event of the room (for display names) on each call, which
// in a bridge's portal of 100 ghosts costs more than the rest of the
// delivery. It reads only.

// StreamEvent is one new timeline event.
type StreamEvent struct {
	Pos    uint64
	RoomID string
	Event  ClientEvent // with room_id
}

// EventsAfter calls fn for each timeline event with from < pos ≤ to in
// stream order, skipping rejected events, outliers and backfilled
// history, as PushEventsAfter does.
func (e *Engine) EventsAfter(from, to uint64, fn func(*StreamEvent) error) error {
	return e.db.View(func(tx *store.Tx) error {
		ids := map[uint64]string{}
		return eachPushable(tx, from, to, func(pos uint64, _ []byte) error {
			ev, err := e.loadEvent(tx, pos)
			if err != nil {
				return err
			}
			roomID, ok := ids[ev.RoomNID]
			if !ok {
				info, err := roomInfoByNID(tx, ev.RoomNID)
				if err != nil {
					return err
				}
				roomID = info.ID
				ids[ev.RoomNID] = roomID
			}
			return fn(&StreamEvent{Pos: pos, RoomID: roomID, Event: e.clientEvent(tx, ev, ClientView{})})
		})
	})
}

// LocalJoinedAndAlias returns the room's joined local members, from the
// members index without reading their events, and its canonical alias.
func (e *Engine) LocalJoinedAndAlias(roomID string) (members []string, alias string, err error) {
	err = e.db.View(func(tx *store.Tx) error {
		info, err := roomInfo(tx, roomID)
		if err != nil {
			return err
		}
		eachCurrentState(tx, info.NID, "m.room.member\x00", func(_, sk string, _ uint64) error {
			if serverOf(sk) == string(e.serverName) && membershipIn(tx, sk, info.NID).Membership == "join" {
				members = append(members, sk)
			}
			return nil
		})
		if a, _ := e.currentStateEvent(tx, info.NID, "m.room.canonical_alias", ""); a != nil {
			alias = gjson.GetBytes(a.PDU.Content(), "alias").String()
		}
		return nil
	})
	return members, alias, err
}
