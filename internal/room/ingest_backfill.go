package room

import (
	"cmp"
	"context"
	"slices"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/hearth-chat/hearth/internal/store"
)

// Backfill (Server-Server API §"Backfilling and retrieving missing
// events"): a server that joins a room late has its history only from
// the join on. When a client pages back past that, the federation service
// fetches older events from another server and hands them here. They are
// placed in the room's timeline before its first entry, at descending
// positions below it (the timeline is per room, so those positions only
// order this room), with the entry's value naming the event's NID. Their
// NIDs come from the stream, like every stored event's, and they are
// flagged historical so that stream consumers (push) leave them alone.

// historyGap is the number of stream positions left free below a joined
// room's first event for its backfilled history.
const historyGap = 1 << 24

// BackfillPoint returns the ID of the room's earliest timeline event and
// whether older history may exist (it is not the create event).
func (e *Engine) BackfillPoint(roomID string) (string, bool) {
	var id string
	more := false
	e.db.View(func(tx *store.Tx) error {
		info, err := roomInfo(tx, roomID)
		if err != nil {
			return nil
		}
		return scanTimeline(tx, info.NID, 0, Forward, func(_, nid uint64) (bool, error) {
			ev, err := e.loadEvent(tx, nid)
			if err != nil {
				return false, err
			}
			id, more = ev.ID, ev.PDU.Type() != "m.room.create" && len(ev.PDU.PrevEventIDs()) > 0
			return false, nil
		})
	})
	return id, more
}

// StoreBackfill places signature-checked events before the room's first
// timeline entry, newest nearest to it. Events already in the timeline
// are skipped; outliers (state learned at the join) move into it. An
// event its own known auth events do not allow is dropped. It returns how
// many events were placed.
func (e *Engine) StoreBackfill(ctx context.Context, roomID string, pdus []gomatrixserverlib.PDU) (int, error) {
	pdus = slices.Clone(pdus)
	slices.SortStableFunc(pdus, func(a, b gomatrixserverlib.PDU) int { return cmp.Compare(b.Depth(), a.Depth()) })
	for _, p := range pdus {
		p.EventID()
	}
	var placed int
	err := e.db.Update(ctx, func(tx *store.Tx) error {
		placed = 0
		info, err := roomInfo(tx, roomID)
		if err != nil {
			return err
		}
		first := uint64(0)
		c := tx.Cursor(store.Timeline)
		if k, _ := c.Seek(store.PutU64(info.NID)); k != nil && hasPrefix(k, store.PutU64(info.NID)) {
			first = store.U64(k[8:])
		}
		for _, p := range pdus {
			if first <= 1 {
				break // no room below: history stops here
			}
			if p.RoomID().String() != info.ID {
				continue
			}
			ev, err := e.historicalEvent(tx, info, p)
			if err != nil {
				return err
			}
			if ev == nil {
				continue
			}
			first--
			if err := tx.Put(store.Timeline, store.NIDKey(info.NID, store.PutU64(first)), store.PutU64(ev.NID)); err != nil {
				return err
			}
			placed++
		}
		return nil
	})
	return placed, err
}

// historicalEvent stores a backfilled event, or turns a stored outlier
// into one; nil when it has no place in the timeline.
func (e *Engine) historicalEvent(tx *store.Tx, info *Info, p gomatrixserverlib.PDU) (*Event, error) {
	if nid := eventNID(tx, p.EventID()); nid != 0 {
		ev, err := e.loadEvent(tx, nid)
		if err != nil || ev.Flags&flagOutlier == 0 || ev.Flags&flagRejected != 0 {
			return nil, err
		}
		ev.Flags = ev.Flags&^flagOutlier | flagHistorical
		return ev, tx.Put(store.Events, store.PutU64(nid), ev.encode())
	}
	missing := &MissingError{}
	auth, reason, err := e.authEventsOf(tx, info.NID, p, missing)
	if err != nil || reason != "" {
		return nil, err
	}
	if len(missing.Auth) == 0 && e.allowedBy(p, auth) != nil {
		return nil, nil
	}
	ev := &Event{RoomNID: info.NID, Version: info.Version, ID: p.EventID(), JSON: p.JSON(), PDU: p,
		Flags: flagHistorical | flagStateless}
	if p.Redacted() {
		ev.Flags |= flagRedacted
	}
	return ev, e.storeEvent(tx, ev)
}
