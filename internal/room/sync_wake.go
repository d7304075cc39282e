package room

import (
	"encoding/json"
	"fmt"

	"github.com/tidwall/gjson"

	"github.com/hearth-chat/hearth/internal/store"
)

// maxConcernSpan bounds SyncConcerns' walk: past it, building the /sync
// response is no dearer than looking at every position first.
const maxConcernSpan = 256

// SyncConcerns reports whether anything at a stream position in (from, to]
// may show in userID's /sync (Client-Server API §"Syncing"), so that a long
// poll woken by a position move can go back to waiting without building a
// response when the move was someone else's. It only rules out what it
// recognises as not the user's:
//
//   - a room event in a room the user has no membership in (of any kind),
//     unless it is a membership event about the user (an invite, a join by
//     an admin's action, a knock's answer);
//   - a change-log entry of kind ChangeState, or a public receipt, in such
//     a room, or a private receipt of another user;
//   - a change-log entry that foreign reports as not the user's (kinds of
//     other packages: account data, presence, device lists).
//
// Anything else — positions it cannot classify (to-device messages, remote
// device keys), a membership of the user's that moved, a span longer than
// maxConcernSpan — counts as a concern, so a wrong answer only costs a
// response build, never a missed update. foreign is called outside the
// store transaction, so it may read the store. The usual wake-up, a
// message in a room the user's last build found them in, is answered from
// memory without a transaction (concernsFromMemory, sync_wake_mem.go).
func (e *Engine) SyncConcerns(userID string, from, to uint64, foreign func(store.Change) bool) (bool, error) {
	if to <= from {
		return false, nil
	}
	if to-from > maxConcernSpan || e.concernsFromMemory(userID, from, to) {
		return true, nil
	}
	concerns := false
	var others []store.Change // change-log entries of other packages' kinds
	err := e.db.View(func(tx *store.Tx) error {
		mine := map[uint64]bool{}
		for _, m := range memberships(tx, userID) {
			if m.Pos > from {
				concerns = true // the user's own membership moved
				return nil
			}
			mine[m.RoomNID] = true
		}
		for p := from + 1; p <= to; p++ {
			c, other, err := positionConcerns(tx, userID, p, mine)
			if err != nil || c {
				concerns = c
				return err
			}
			if other != nil {
				others = append(others, *other)
			}
		}
		return nil
	})
	if err != nil || concerns {
		return concerns, err
	}
	// foreign may read the store itself: asked outside the transaction,
	// as a read transaction opened inside another can deadlock against a
	// commit that grows the file (bbolt's remap lock).
	for _, c := range others {
		if foreign == nil || !foreign(c) {
			return true, nil
		}
	}
	return false, nil
}

// positionConcerns classifies one stream position for SyncConcerns; a
// change-log entry of a kind it does not know is returned for the caller's
// foreign.
func positionConcerns(tx *store.Tx, userID string, p uint64, mine map[uint64]bool) (concerns bool, other *store.Change, err error) {
	key := store.PutU64(p)
	if b := tx.Get(store.Events, key); b != nil {
		ev, err := decodeEvent(p, b)
		if err != nil {
			return false, nil, err
		}
		if mine[ev.RoomNID] {
			return true, nil, nil
		}
		r := gjson.GetManyBytes(ev.JSON, "type", "state_key")
		return r[0].String() == "m.room.member" && r[1].String() == userID, nil, nil
	}
	v := tx.Get(store.Changes, key)
	if v == nil {
		return true, nil, nil // not a room event nor a change: unknown here
	}
	var c store.Change
	if err := json.Unmarshal(v, &c); err != nil {
		return false, nil, fmt.Errorf("room: decode change %d: %w", p, err)
	}
	switch c.Kind {
	case ChangeReceipt:
		if c.Localpart != "" && c.Localpart != userID {
			return false, nil, nil // another user's private receipt
		}
		fallthrough
	case ChangeState:
		return mine[store.U64(tx.Get(store.Rooms, []byte(c.RoomID)))], nil, nil
	}
	return false, &c, nil
}
