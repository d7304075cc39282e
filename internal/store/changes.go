package store

import (
	"encoding/json"
	"fmt"
)

// Change is one entry of the change log: something other than a room event
// that a /sync must report (account data, receipts, profile or membership
// side-effects). Kind names the producer; the other fields narrow who and
// what it concerns so a reader can skip irrelevant entries cheaply.
type Change struct {
	Kind      string `json:"k"`
	Localpart string `json:"u,omitempty"` // the local user it is private to, if any
	RoomID    string `json:"r,omitempty"`
	Key       string `json:"t,omitempty"`
}

// AppendChange records c at the next stream position.
func (tx *Tx) AppendChange(c Change) (uint64, error) {
	pos, err := tx.NextPos()
	if err != nil {
		return 0, err
	}
	b, err := json.Marshal(c)
	if err != nil {
		return 0, fmt.Errorf("store: encode change: %w", err)
	}
	if err := tx.Put(Changes, PutU64(pos), b); err != nil {
		return 0, err
	}
	tx.changes = append(tx.changes, posKind{pos, c.Kind})
	return pos, nil
}

// ChangesSince calls fn for each change with from < pos ≤ to, in order.
func (tx *Tx) ChangesSince(from, to uint64, fn func(pos uint64, c Change) error) error {
	cur := tx.Cursor(Changes)
	for k, v := cur.Seek(PutU64(from + 1)); k != nil; k, v = cur.Next() {
		pos := U64(k)
		if pos > to {
			break
		}
		var c Change
		if err := json.Unmarshal(v, &c); err != nil {
			return fmt.Errorf("store: decode change %d: %w", pos, err)
		}
		if err := fn(pos, c); err != nil {
			return err
		}
	}
	return nil
}
