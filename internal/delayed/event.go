package delayed

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/hearth-chat/hearth/internal/store"
)

// Outcomes of a finalised delayed event (MSC4140 "Getting a list of
// delayed events", the outcome filter).
const (
	OutcomeSend   = "send"   // sent into the room
	OutcomeCancel = "cancel" // cancelled by the cancel action
	OutcomeError  = "error"  // cancelled because sending it failed
)

// Reasons a delayed event was finalised (the reason filter): by a
// management action, or by its delay running out.
const (
	ReasonAction = "action"
	ReasonDelay  = "delay"
)

// Event is one delayed event as stored: what was asked for, when its
// timer started, and for a finalised one how it ended.
type Event struct {
	ID           string          `json:"delay_id"`
	UserID       string          `json:"user_id"`
	Session      string          `json:"session,omitempty"` // the scheduling client session, for its txn ID
	TxnID        string          `json:"txn_id,omitempty"`
	RoomID       string          `json:"room_id"`
	Type         string          `json:"type"`
	StateKey     *string         `json:"state_key,omitempty"`
	Content      json.RawMessage `json:"content"`
	Delay        int64           `json:"delay"`         // ms
	RunningSince int64           `json:"running_since"` // Unix ms of scheduling or the last restart

	// Set once finalised.
	Outcome     string          `json:"outcome,omitempty"`
	Reason      string          `json:"reason,omitempty"`
	EventID     string          `json:"event_id,omitempty"`
	Error       json.RawMessage `json:"error,omitempty"` // the standard error response that stopped it
	FinalisedTS int64           `json:"finalised_ts,omitempty"`
}

// Scheduled reports whether the event still waits to be sent.
func (e *Event) Scheduled() bool { return e.Outcome == "" }

// Due is the Unix ms at which a scheduled event is sent.
func (e *Event) Due() int64 { return e.RunningSince + e.Delay }

func dueKey(due int64, id string) []byte {
	return append(store.PutU64(uint64(max(due, 0))), id...)
}

func userKey(userID, id string) []byte { return store.Key(userID, id) }

func txnKey(e *Event) []byte { return store.Key(e.UserID, e.Session, e.TxnID, e.RoomID, e.Type) }

func getEvent(tx *store.Tx, id string) (*Event, error) {
	v := tx.Get(store.Delayed, []byte(id))
	if v == nil {
		return nil, nil
	}
	var e Event
	if err := json.Unmarshal(v, &e); err != nil {
		return nil, fmt.Errorf("delayed: read %s: %w", id, err)
	}
	return &e, nil
}

// putEvent writes e and its index entries. old is the stored version
// (nil for a new event), whose due-index entry goes.
func putEvent(tx *store.Tx, old, e *Event) error {
	if old != nil && old.Scheduled() {
		if err := tx.Delete(store.DelayedDue, dueKey(old.Due(), old.ID)); err != nil {
			return err
		}
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("delayed: encode %s: %w", e.ID, err)
	}
	if err := tx.Put(store.Delayed, []byte(e.ID), b); err != nil {
		return err
	}
	if e.Scheduled() {
		if err := tx.Put(store.DelayedDue, dueKey(e.Due(), e.ID), nil); err != nil {
			return err
		}
	}
	if old == nil {
		if err := tx.Put(store.DelayedUser, userKey(e.UserID, e.ID), nil); err != nil {
			return err
		}
		if e.TxnID != "" {
			if err := tx.Put(store.DelayedTxns, txnKey(e), []byte(e.ID)); err != nil {
				return err
			}
		}
	}
	return nil
}

// deleteEvent forgets a finalised event and its index entries.
func deleteEvent(tx *store.Tx, e *Event) error {
	if e.Scheduled() {
		if err := tx.Delete(store.DelayedDue, dueKey(e.Due(), e.ID)); err != nil {
			return err
		}
	}
	if e.TxnID != "" {
		if err := tx.Delete(store.DelayedTxns, txnKey(e)); err != nil {
			return err
		}
	}
	if err := tx.Delete(store.DelayedUser, userKey(e.UserID, e.ID)); err != nil {
		return err
	}
	return tx.Delete(store.Delayed, []byte(e.ID))
}

// userEvents reads every delayed event of userID, scheduled and
// finalised.
func userEvents(tx *store.Tx, userID string) ([]*Event, error) {
	prefix := store.Key(userID, "")
	var out []*Event
	c := tx.Cursor(store.DelayedUser)
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		e, err := getEvent(tx, string(k[len(prefix):]))
		if err != nil {
			return nil, err
		}
		if e != nil {
			out = append(out, e)
		}
	}
	return out, nil
}

// firstDue is the scheduled event sent next, skipping those in skip.
func firstDue(tx *store.Tx, skip map[string]chan struct{}) (id string, due int64, ok bool) {
	c := tx.Cursor(store.DelayedDue)
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) < 8 {
			continue
		}
		id := string(k[8:])
		if _, busy := skip[id]; busy {
			continue
		}
		return id, int64(store.U64(k[:8])), true
	}
	return "", 0, false
}
