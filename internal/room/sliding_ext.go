package room

import (
	"encoding/json"

	"github.com/hearth-chat/hearth/internal/store"
)

// What the sliding sync extensions need from the room engine (MSC4186
// §"Extensions"): receipts and typing for the rooms of a response, and the
// membership changes e2ee's device_lists are worked out from, for all the
// user's rooms (not only those in the window: a device list must not miss
// a user because their room scrolled out of view).

// SlidingReceipts returns the m.receipt event of each room in rooms whose
// receipts changed in (since, now]; a room in whole (or every room when
// since is 0) gets all its receipts, as an initial /sync does.
func (e *Engine) SlidingReceipts(userID string, rooms []string, whole map[string]bool, since, now uint64) (map[string]json.RawMessage, error) {
	out := map[string]json.RawMessage{}
	err := e.db.View(func(tx *store.Tx) error {
		changes, err := roomChangesSince(tx, SyncRequest{UserID: userID, Since: since, Now: now})
		if err != nil {
			return err
		}
		for _, id := range rooms {
			nid := store.U64(tx.Get(store.Rooms, []byte(id)))
			if nid == 0 || membershipIn(tx, userID, nid).Membership != "join" {
				continue
			}
			var who map[string]bool
			if since != 0 && !whole[id] {
				if who = changes.receipts[id]; who == nil {
					continue
				}
			}
			if rc := receiptContent(tx, nid, userID, who); len(rc) > 0 {
				out[id], _ = json.Marshal(map[string]any{"type": "m.receipt", "content": rc})
			}
		}
		return nil
	})
	return out, err
}

// SlidingTyping returns the m.typing event of each room in rooms whose
// typing users changed after the ephemeral counter since (every room with
// someone typing when since is 0, or when the room is in whole).
func (e *Engine) SlidingTyping(rooms []string, whole map[string]bool, since uint64) map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	for _, id := range rooms {
		users, changed := e.typingSince(id, since, since == 0 || whole[id])
		if !changed {
			continue
		}
		if users == nil {
			users = []string{}
		}
		out[id], _ = json.Marshal(map[string]any{"type": "m.typing", "content": map[string]any{"user_ids": users}})
	}
	return out
}

// maxMemberScan bounds the events MemberEventsSince reads per room.
const maxMemberScan = 1000

func ownJoin(userID string) ClientEvent {
	return ClientEvent{Type: "m.room.member", StateKey: &userID, Sender: userID,
		Content: json.RawMessage(`{"membership":"join"}`)}
}

// MemberEventsSince returns the member events in (since, now] of the
// rooms the user is joined to (by room), and of the rooms they left or
// were removed from in that span, in the shape /sync's rooms section has
// them, for device_lists.
func (e *Engine) MemberEventsSince(userID string, since, now uint64) (map[string][]ClientEvent, [][]ClientEvent, error) {
	joined, left := map[string][]ClientEvent{}, [][]ClientEvent{}
	err := e.db.View(func(tx *store.Tx) error {
		ms := memberships(tx, userID)
		nids := make([]uint64, len(ms))
		for i, m := range ms {
			nids[i] = m.RoomNID
		}
		// Which rooms can have member events after since, from the index,
		// so that only those rooms are read.
		lasts, members, memberFrom, indexed, err := e.roomPositions(tx, nids)
		if err != nil {
			return err
		}
		for i, m := range ms {
			if m.Pos > now {
				continue
			}
			var to uint64
			switch {
			case m.Membership == "join":
				to = now
			case (m.Membership == "leave" || m.Membership == "ban") && m.Pos > since:
				to = m.Pos
			default:
				continue
			}
			if indexed && lasts[i] != 0 {
				if lasts[i] <= since {
					continue // nothing happened in the room
				}
				if since >= memberFrom && members[i] <= since {
					continue // no member event in the room since
				}
			}
			info, err := roomInfoByNID(tx, m.RoomNID)
			if err != nil {
				return err
			}
			if info.LastPos <= since {
				continue // nothing happened in the room
			}
			var evs []ClientEvent
			scanned := 0
			err = scanTimeline(tx, info.NID, to, Backward, func(pos, nid uint64) (bool, error) {
				if pos <= since {
					return false, nil
				}
				if scanned++; scanned > maxMemberScan {
					// Too far behind to walk: report the room as if the
					// user had just joined it, so every member counts as
					// changed, which is what /sync says for a gap too.
					evs = []ClientEvent{ownJoin(userID)}
					return false, nil
				}
				ev, err := e.loadEvent(tx, nid)
				if err != nil {
					return false, err
				}
				if ev.PDU.Type() == "m.room.member" && ev.Flags&flagRejected == 0 {
					evs = append(evs, e.clientEvent(nil, ev, ClientView{OmitRoomID: true}))
				}
				return true, nil
			})
			if err != nil {
				return err
			}
			if m.Membership == "join" && len(evs) > 0 {
				joined[info.ID] = evs
			} else if m.Membership != "join" {
				left = append(left, evs)
			}
		}
		return nil
	})
	return joined, left, err
}

// SlidingChanges reads the change log in (since, now] for what makes a
// room already sent worth sending again without a new event: the user's
// own read receipts (its unread counts drop) and state moved by state
// resolution (ChangeState).
func (e *Engine) SlidingChanges(userID string, since, now uint64) (ownReceipt, stateMoved map[string]bool, err error) {
	ownReceipt = map[string]bool{}
	err = e.db.View(func(tx *store.Tx) error {
		changes, err := roomChangesSince(tx, SyncRequest{UserID: userID, Since: since, Now: now})
		if err != nil {
			return err
		}
		for roomID, users := range changes.receipts {
			if users[userID] {
				ownReceipt[roomID] = true
			}
		}
		stateMoved = changes.stateMoved
		return nil
	})
	return ownReceipt, stateMoved, err
}
