package room

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/internal/store"
)

// EarlyPush lets push evaluate a batch of events while the commit that
// makes them durable runs, so that their counts are published the moment
// the sequencer learns of the commit instead of after the push follower
// has been scheduled, read the events back and evaluated them: every
// long poll of the room waits for those counts (Client-Server API
// §"Receiving notifications", docs/performance.md "Delivery: counts at
// commit and a shared room section").
//
// It is called from a goroutine of its own with the batch's events, whose
// Pos is still 0, and returns the function to call once they are durable
// with Pos set (nil: nothing to publish). That function runs on the
// store's writer, right after the commit has advanced the stream
// (store.Tx.AfterCommit), or on the evaluation's goroutine, whichever
// finishes second, and must not block.
type EarlyPush func(pes []*PushEvent) (publish func())

// SetEarlyPush installs p (nil removes it).
func (e *Engine) SetEarlyPush(p EarlyPush) {
	if p == nil {
		e.earlyPush.Store(nil)
		return
	}
	e.earlyPush.Store(&p)
}

// earlyPushHook is the Engine's field type for SetEarlyPush.
type earlyPushHook = atomic.Pointer[EarlyPush]

var errMoved = errors.New("room: the head moved")

// earlyGate, when set (by tests), runs at the start of every early
// evaluation: it holds one back until its batch has committed.
var earlyGate atomic.Pointer[func()]

// meeting is where work done beside a commit (early push, sync_early.go)
// meets the commit: whichever of the two reports second goes on to hand
// the work's results over, and neither waits for the other.
type meeting struct {
	mu      sync.Mutex
	arrived int
}

// arrive records the caller's side with set, under the meeting's lock,
// and reports whether the other side had already arrived.
func (m *meeting) arrive(set func()) (second bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	set()
	m.arrived++
	return m.arrived == 2
}

// earlyRun is one batch's early evaluation; it meets the commit.
type earlyRun struct {
	meeting
	stored  []*Event // the events committed
	pes     []*PushEvent
	publish func() // nil if the evaluation failed
}

// startEarlyPush starts the early evaluation of a batch built on the
// room's head at position head, or returns nil. Only batches of events
// that change no state and redact nothing qualify: the room's push facts
// (members, their names, power levels) read at the head are then the
// facts at every event of the batch, as PushEventsAfter would read them
// after the commit. A room whose only joined member is the sender has
// nobody to count for: the follower's evaluation is then as good, and
// the early one would only double the work of making its PushEvents.
func (e *Engine) startEarlyPush(roomID string, head uint64, joined int, pdus []gomatrixserverlib.PDU) *earlyRun {
	hook := e.earlyPush.Load()
	if hook == nil || len(pdus) == 0 || joined < 2 {
		return nil
	}
	for _, pdu := range pdus {
		// A redaction rewrites the event it redacts in place (a member
		// event, power levels, or a message of the same batch), so the
		// facts read at the head would not be the follower's.
		if pdu.StateKey() != nil || pdu.Type() == spec.MRoomRedaction {
			return nil
		}
	}
	// The facts are read in a snapshot taken now, before the commit:
	// begun in the goroutine, the read found the batch's own events
	// there whenever the goroutine was scheduled after the commit (1.6%
	// of messages in the /sync bench on a loaded machine), and gave up.
	snap, err := e.db.Snapshot()
	if err != nil {
		return nil // the follower evaluates them after the commit
	}
	r := &earlyRun{}
	go func() {
		if g := earlyGate.Load(); g != nil {
			(*g)()
		}
		var pes []*PushEvent
		err := func(tx *store.Tx) error {
			// Ended before push's evaluation, which opens read
			// transactions of its own: a commit that must grow bbolt's
			// mapping waits for every open read, and a read begun while
			// it waits queues behind it (so a nested one would deadlock).
			defer tx.Done()
			info, err := roomInfo(tx, roomID)
			if err != nil {
				return err
			}
			if info.LastPos != head {
				return errMoved // the batch will be built again on the new head
			}
			facts, err := e.pushFacts(tx, info)
			if err != nil {
				return err
			}
			for _, pdu := range pdus {
				ev := &Event{RoomNID: info.NID, Version: info.Version, ID: pdu.EventID(), StateBefore: info.Snapshot,
					JSON: pdu.JSON(), PDU: pdu}
				sender := string(pdu.SenderID())
				pe := &PushEvent{RoomID: info.ID, Event: e.clientEvent(tx, ev, ClientView{}),
					ThreadRoot: threadOf(ev), RoomName: facts.name, Members: info.Joined}
				pe.SenderName = facts.names[sender]
				if pe.SenderName == "" {
					pe.SenderName = senderDisplayName(tx, info.NID, sender)
				}
				for _, m := range facts.members {
					if m.UserID != sender {
						pe.Local = append(pe.Local, m)
					}
				}
				pe.setLevels(facts.pl, sender)
				pes = append(pes, pe)
			}
			return nil
		}(snap)
		var publish func()
		if err == nil { // else the follower evaluates them after the commit
			publish = (*hook)(pes)
		}
		if r.arrive(func() { r.pes, r.publish = pes, publish }) {
			r.hand()
		}
	}()
	return r
}

// committed tells the early evaluation that stored are the events the
// commit made durable; the results are published now if the evaluation
// has ended, else when it ends. It does not wait.
func (r *earlyRun) committed(stored []*Event) {
	if r != nil && r.arrive(func() { r.stored = stored }) {
		r.hand()
	}
}

// hand publishes the results for the stored events, unless the batch was
// built again in the write transaction (other event IDs, then the
// follower evaluates them); it runs once both sides have arrived.
func (r *earlyRun) hand() {
	if r.publish == nil || len(r.stored) != len(r.pes) {
		return
	}
	for i, ev := range r.stored {
		if ev.ID != r.pes[i].Event.EventID {
			return
		}
	}
	for i, ev := range r.stored {
		r.pes[i].Pos = ev.NID
	}
	r.publish()
	r.publish = nil
}

// plannedPDUs are the events a batch will append, in order.
func plannedPDUs(plan []planned) []gomatrixserverlib.PDU {
	var out []gomatrixserverlib.PDU
	for _, pl := range plan {
		if pl.dupOf < 0 {
			out = append(out, pl.pdu)
		}
	}
	return out
}
