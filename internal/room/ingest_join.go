package room

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/hearth-chat/hearth/internal/store"
)

// JoinRemote stores a room this server joins through another server
// (Server-Server API §"Joining Rooms"): the state and auth chain from the
// send_join response, which the caller has checked (signatures and auth,
// gomatrixserverlib.CheckSendJoinResponse), become outliers, and the join
// event starts the room's timeline here with that state before it.
func (e *Engine) JoinRemote(ctx context.Context, join gomatrixserverlib.PDU, state, authChain []gomatrixserverlib.PDU) error {
	join.EventID()
	return e.db.Update(ctx, func(tx *store.Tx) error {
		info, err := e.roomForRemote(tx, join.RoomID().String(), join.Version())
		if err != nil {
			return err
		}
		if eventNID(tx, join.EventID()) != 0 {
			return nil
		}
		if err := e.storeOutliers(tx, info, authChain); err != nil {
			return err
		}
		if err := e.storeOutliers(tx, info, state); err != nil {
			return err
		}
		before := &roomState{nids: make(map[string]uint64, len(state))}
		for _, p := range state {
			if sk := p.StateKey(); sk != nil {
				before.nids[stateKey(p.Type(), *sk)] = eventNID(tx, p.EventID())
			}
		}
		// The resident server took the join through send_join and sends it
		// on to the room itself: the outbound queue must not send it again
		// (a server's first PDU of the room after our join is then our
		// first new event, which Complement's TestOutboundFederationSend
		// expects).
		ev := &Event{RoomNID: info.NID, Version: info.Version, ID: join.EventID(), JSON: join.JSON(), PDU: join,
			Flags: flagDelivered}
		if ev.StateBefore, err = e.snapshotOf(tx, info, before); err != nil {
			return err
		}
		if info.LastPos == 0 {
			// The room's history from before the join can only be placed
			// below its first timeline entry (ingest_backfill.go): leave room.
			if err := tx.SkipPos(historyGap); err != nil {
				return err
			}
		}
		ev.Replaces = before.nids[stateKey("m.room.member", *join.StateKey())]
		info.Extremities = nil // the join builds on the resident server's extremities
		if err := e.appendRemote(tx, info, ev, false); err != nil {
			return err
		}
		return putRoomInfo(tx, info)
	})
}

// roomForRemote returns the room's info, creating the record of a room
// this server learns of from another server.
func (e *Engine) roomForRemote(tx *store.Tx, roomID string, version gomatrixserverlib.RoomVersion) (*Info, error) {
	if nid := store.U64(tx.Get(store.Rooms, []byte(roomID))); nid != 0 {
		return roomInfoByNID(tx, nid)
	}
	nid, err := tx.NextID(store.RoomInfo)
	if err != nil {
		return nil, err
	}
	info := &Info{NID: nid, ID: roomID, Version: version}
	if err := tx.Put(store.Rooms, []byte(roomID), store.PutU64(nid)); err != nil {
		return nil, err
	}
	return info, putRoomInfo(tx, info)
}

// storeOutliers stores checked events that are not part of the timeline
// here (auth chains, state from /state or send_join), with no state.
func (e *Engine) storeOutliers(tx *store.Tx, info *Info, pdus []gomatrixserverlib.PDU) error {
	for _, p := range pdus {
		if p.RoomID().String() != info.ID {
			return fmt.Errorf("room: outlier %s is in another room", p.EventID())
		}
		if eventNID(tx, p.EventID()) != 0 {
			continue
		}
		ev := &Event{RoomNID: info.NID, Version: info.Version, ID: p.EventID(), JSON: p.JSON(), PDU: p,
			Flags: flagOutlier | flagStateless}
		if p.Redacted() {
			ev.Flags |= flagRedacted
		}
		if err := e.storeEvent(tx, ev); err != nil {
			return err
		}
	}
	return nil
}

// Extremities returns the room's forward extremities.
func (e *Engine) Extremities(roomID string) ([]string, error) {
	var out []string
	err := e.db.View(func(tx *store.Tx) error {
		info, err := roomInfo(tx, roomID)
		if err == nil {
			out = info.Extremities
		}
		return err
	})
	return out, err
}

// HasStateAt reports whether the event is stored with the state before it.
func (e *Engine) HasStateAt(eventID string) bool {
	ok := false
	e.db.View(func(tx *store.Tx) error {
		b := tx.Get(store.Events, store.PutU64(eventNID(tx, eventID)))
		ok = len(b) > 0 && b[0]&flagStateless == 0
		return nil
	})
	return ok
}

// StoreOutliers stores signature-checked events fetched for their auth
// chains or as state (/event_auth, /state), oldest first; one that its
// own known auth events do not allow is stored as rejected.
func (e *Engine) StoreOutliers(ctx context.Context, roomID string, pdus []gomatrixserverlib.PDU) error {
	pdus = slices.Clone(pdus)
	slices.SortStableFunc(pdus, func(a, b gomatrixserverlib.PDU) int { return cmp.Compare(a.Depth(), b.Depth()) })
	for _, p := range pdus {
		p.EventID()
	}
	return e.db.Update(ctx, func(tx *store.Tx) error {
		info, err := roomInfo(tx, roomID)
		if err != nil {
			return err
		}
		for _, p := range pdus {
			if p.RoomID().String() != info.ID || eventNID(tx, p.EventID()) != 0 {
				continue
			}
			ev := &Event{RoomNID: info.NID, Version: info.Version, ID: p.EventID(), JSON: p.JSON(), PDU: p,
				Flags: flagOutlier | flagStateless}
			if p.Redacted() {
				ev.Flags |= flagRedacted
			}
			missing := &MissingError{}
			auth, reason, err := e.authEventsOf(tx, info.NID, p, missing)
			if err != nil {
				return err
			}
			if reason == "" && len(missing.Auth) == 0 {
				if err := e.allowedBy(p, auth); err != nil {
					reason = err.Error()
				}
			}
			if reason != "" {
				ev.Flags |= flagRejected
			}
			if err := e.storeEvent(tx, ev); err != nil {
				return err
			}
		}
		return nil
	})
}

// IngestWithState stores an event whose prev events this server lacks,
// with the state before it as another server reported it (/state): it
// becomes an outlier that later events can build on. The state events
// must be stored already (StoreOutliers).
func (e *Engine) IngestWithState(ctx context.Context, pdu gomatrixserverlib.PDU, stateIDs []string) error {
	pdu.EventID()
	var rejected error
	err := e.db.Update(ctx, func(tx *store.Tx) error {
		rejected = nil
		info, err := roomInfo(tx, pdu.RoomID().String())
		if err != nil {
			return err
		}
		ev := &Event{RoomNID: info.NID, Version: info.Version, ID: pdu.EventID(), JSON: pdu.JSON(), PDU: pdu, Flags: flagOutlier}
		if nid := eventNID(tx, pdu.EventID()); nid != 0 {
			old, err := e.loadEvent(tx, nid)
			if err != nil || old.Flags&flagStateless == 0 {
				return err
			}
			// Known as an outlier without state: store it again with it.
			if err := tx.Delete(store.EventIDs, []byte(pdu.EventID())); err != nil {
				return err
			}
			if err := tx.Delete(store.Events, store.PutU64(nid)); err != nil {
				return err
			}
		}
		before := &roomState{nids: map[string]uint64{}}
		for _, id := range stateIDs {
			nid := eventNID(tx, id)
			if nid == 0 {
				return &MissingError{Auth: []string{id}}
			}
			s, err := e.loadEvent(tx, nid)
			if err != nil {
				return err
			}
			if sk := s.PDU.StateKey(); sk != nil {
				before.nids[stateKey(s.PDU.Type(), *sk)] = nid
			}
		}
		if err := e.allowedAt(tx, pdu, before); err != nil {
			ev.Flags |= flagRejected
			rejected = &RejectedError{err.Error()}
		}
		if ev.StateBefore, err = e.snapshotOf(tx, info, before); err != nil {
			return err
		}
		return e.storeEvent(tx, ev)
	})
	if err != nil {
		return err
	}
	return rejected
}
