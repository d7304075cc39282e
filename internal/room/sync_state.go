package room

import (
	"encoding/json"

	"github.com/hearth-chat/hearth/internal/store"
)

// ChangeState is the change-log kind recorded when a room's current state
// moves in a way its timeline does not show: state resolution between
// branches (§"Room State Resolution"), or state learned with an event whose
// earlier events arrived as state only (/state at a gap). The entry takes
// a stream position, so it wakes /sync, and /sync then reports the room's
// state that changed since the token.
const ChangeState = "state"

// noteStateMoved records a ChangeState entry when the current state moved
// from old to next by more than the appended event itself (nid).
func noteStateMoved(tx *store.Tx, info *Info, old, next *roomState, nid uint64) error {
	if err := old.load(tx); err != nil {
		return err
	}
	if err := next.load(tx); err != nil {
		return err
	}
	if len(old.nids) == 0 {
		return nil // the room's first state here (a join): nobody synced it yet
	}
	moved := len(old.nids) > len(next.nids)
	for k, n := range next.nids {
		if old.nids[k] != n && n != nid {
			moved = true
			break
		}
	}
	if !moved {
		return nil
	}
	_, err := tx.AppendChange(store.Change{Kind: ChangeState, RoomID: info.ID})
	return err
}

// syncState picks the events of a joined room's state section
// (Client-Server API §"Syncing": the state "up to the start of the
// timeline"), as (type, state_key) → NID:
//
//   - start is the state at the start of the timeline. An initial sync
//     (or a room joined since the token) takes all of it; an incremental
//     one only what changed since the token (NID > since).
//   - end is the room's state at the end of the timeline. Where it holds
//     an event the timeline does not carry (state resolution between
//     branches, state learned without its events, events the timeline
//     filter left out), that event is reported too, or the client would
//     never learn the room's real state.
//
// end is read only when it may differ from what start and the timeline
// give: on an initial sync, when the change log says the state moved
// (stateMoved), and when the timeline leaves out state events of its span
// (a filter that hides messages costs nothing here).
func (e *Engine) syncState(tx *store.Tx, req SyncRequest, info *Info, tl Timeline, initial, stateMoved bool) (map[string]uint64, error) {
	out := map[string]uint64{}
	var start map[string]uint64
	if initial || tl.Limited {
		var err error
		if start, err = e.stateMapAt(tx, info, tl.PrevBatch); err != nil {
			return nil, err
		}
		for k, nid := range start {
			if initial || nid > req.Since {
				out[k] = nid
			}
		}
	}
	if !initial && !stateMoved && !tl.skippedState {
		return out, nil
	}
	end, err := e.stateMapAt(tx, info, req.Now)
	if err != nil {
		return nil, err
	}
	for k, nid := range end {
		if nid == start[k] || tl.nids[nid] || nid > req.Now || (!initial && nid <= req.Since) {
			continue
		}
		out[k] = nid
	}
	return out, nil
}

// syncStateAfter picks the events of a joined room's state_after section
// (MSC4222; spec v1.16 use_state_after): the room's state at the end of
// the timeline, as (type, state_key) → NID. An initial sync (or a room
// joined since the token) takes all of it; an incremental one what differs
// from the state at the token, state events the timeline also carries
// included, since the client must take state from this section alone.
// A state event of the timeline that did not become current (it lost
// state resolution) is not in it.
//
// Without a state move in the change log every change since the token is
// an event appended since, so NID > since finds them; with one (stateMoved)
// the state may have gone back to an older event, and the state at the
// token is read to compare. An incremental sync whose timeline shows the
// whole span since the token, with no state event in it, reads no state
// at all: most rooms of a sync are like that, and js clients ask for
// state_after on every sync.
func (e *Engine) syncStateAfter(tx *store.Tx, req SyncRequest, info *Info, tl Timeline, initial, stateMoved bool) (map[string]uint64, error) {
	if !initial && !stateMoved && !tl.Limited && !tl.skippedState && !hasStateEvent(tl.Events) {
		return nil, nil
	}
	end, err := e.stateMapAt(tx, info, req.Now)
	if err != nil {
		return nil, err
	}
	var before map[string]uint64
	if !initial && stateMoved {
		if before, err = e.stateMapAt(tx, info, req.Since); err != nil {
			return nil, err
		}
	}
	out := map[string]uint64{}
	for k, nid := range end {
		switch {
		case nid > req.Now:
		case initial, before != nil && before[k] != nid, before == nil && nid > req.Since:
			out[k] = nid
		}
	}
	return out, nil
}

func hasStateEvent(evs []ClientEvent) bool {
	for _, ev := range evs {
		if ev.StateKey != nil {
			return true
		}
	}
	return false
}

// roomChanges is what the change log says about rooms between two sync
// tokens: whose receipts changed, and which rooms' state moved.
type roomChanges struct {
	receipts   map[string]map[string]bool // room → users
	stateMoved map[string]bool
}

// roomChangesSince reads the change log between the tokens (nothing on
// an initial sync, which reports everything anyway).
func roomChangesSince(tx *store.Tx, req SyncRequest) (roomChanges, error) {
	rc := roomChanges{receipts: map[string]map[string]bool{}, stateMoved: map[string]bool{}}
	if req.Since == 0 || (!req.Kinds.Has(ChangeState) && !req.Kinds.Has(ChangeReceipt)) {
		return rc, nil
	}
	err := tx.ChangesSince(req.Since, req.Now, func(_ uint64, c store.Change) error {
		switch {
		case c.Kind == ChangeState:
			rc.stateMoved[c.RoomID] = true
		case c.Kind == ChangeReceipt && (c.Localpart == "" || c.Localpart == req.UserID):
			if rc.receipts[c.RoomID] == nil {
				rc.receipts[c.RoomID] = map[string]bool{}
			}
			rc.receipts[c.RoomID][c.Key] = true
		}
		return nil
	})
	return rc, err
}

// newMembers lists the users who newly share a joined room with the
// syncing user (JoinedRoom.NewMembers).
func (e *Engine) newMembers(tx *store.Tx, req SyncRequest, info *Info, m Membership, tl Timeline) ([]string, error) {
	var out []string
	if m.Pos > req.Since {
		err := eachCurrentState(tx, info.NID, "m.room.member\x00", func(_, sk string, nid uint64) error {
			if sk == req.UserID || nid > req.Now {
				return nil
			}
			ev, err := e.loadEvent(tx, nid)
			if err != nil {
				return err
			}
			if ms, _ := ev.PDU.Membership(); ms == "join" {
				out = append(out, sk)
			}
			return nil
		})
		return out, err
	}
	for _, ev := range tl.Events {
		if ev.Type != "m.room.member" || ev.StateKey == nil || *ev.StateKey == req.UserID {
			continue
		}
		var now, before struct {
			Membership string `json:"membership"`
		}
		json.Unmarshal(ev.Content, &now)
		if prev, ok := ev.Unsigned["prev_content"].(json.RawMessage); ok {
			json.Unmarshal(prev, &before)
		}
		if now.Membership == "join" && before.Membership != "join" {
			out = append(out, *ev.StateKey)
		}
	}
	return out, nil
}
