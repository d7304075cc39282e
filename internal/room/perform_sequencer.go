package room

import (
	"context"
	"sync"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/hearth-chat/hearth/internal/store"
)

// Sends to one room go through that room's queue. One builder goroutine
// per busy room takes everything queued, builds the events one on top of
// the other (each one's prev_events is the event before it, its depth one
// more), and appends the whole batch in one write transaction, so the
// batch shares one fsync. Concurrent senders in one room used to build
// on the head they saw and rebuild in the writer when another send had
// moved it; under 32 senders nearly every send was built twice.
//
// A batch holds message events and at most one state event or redaction,
// as its last event: message events change no state, so the auth events
// read once for the batch are the state before every event in it, and
// gomatrixserverlib.Allowed checks each event against them as it is built.
// A request is answered only after the commit that makes its event
// durable.
//
// While a batch of messages commits, the builder builds the next one on
// its last event (Issue 15: with one busy room the writer otherwise sat
// between a batch's commit and the next batch's build). If that batch's
// commit fails, or another writer moves the head first, the next batch's
// write transaction sees a head other than the one it was built on and
// builds its events again there, as for any batch whose head moved.

// maxBatch bounds the events of one batch, and so the wait of its first
// sender.
const maxBatch = 256

// sequencer holds the per-room queues; the zero value is ready to use.
type sequencer struct {
	mu    sync.Mutex
	rooms map[string]*roomQueue // roomID → sends waiting for its builder
}

type roomQueue struct {
	pending []*pendingSend
}

// pendingSend is one Send waiting for its event; done is closed once id
// or err is final.
type pendingSend struct {
	ctx  context.Context
	req  SendRequest
	id   string
	err  error
	done chan struct{}
}

func (p *pendingSend) finish(id string, err error) {
	p.id, p.err = id, err
	close(p.done)
}

// enqueue adds p to its room's queue and starts the room's builder if it
// has none. The builder exits when the queue is empty, so an idle server
// has no goroutine per room.
func (e *Engine) enqueue(p *pendingSend) {
	s := &e.seq
	s.mu.Lock()
	if s.rooms == nil {
		s.rooms = map[string]*roomQueue{}
	}
	q, running := s.rooms[p.req.RoomID]
	if !running {
		q = &roomQueue{}
		s.rooms[p.req.RoomID] = q
	}
	q.pending = append(q.pending, p)
	s.mu.Unlock()
	if !running {
		go e.buildRoom(p.req.RoomID, q)
	}
}

// buildRoom is a room's builder: it sends batch after batch until the
// queue is empty. A batch of message events is committed on its own
// goroutine while the builder builds the next batch on top of it (its
// first event's prev_events is the batch's last event), so building and
// committing overlap; the commits stay in queue order. The builder waits
// for a batch's commit before building the next when the batch changes
// state (a state event or redaction, which the next batch's auth checks
// must see) or holds a transaction ID the next batch repeats (a retry must
// find the first send's event), and before it lets the room's queue go.
func (e *Engine) buildRoom(roomID string, q *roomQueue) {
	var prev *inflight
	for {
		batch := e.nextBatch(roomID, q, prev != nil)
		if batch == nil {
			if prev == nil {
				return
			}
			<-prev.done
			prev = nil
			continue
		}
		if prev != nil && prev.before != nil {
			// One batch in flight at most: the batch before prev has
			// committed, so the read transaction sees its transaction IDs.
			<-prev.before.done
			prev.before = nil
		}
		if prev != nil && prev.blocks(batch) {
			<-prev.done
		}
		if prev != nil {
			select {
			case <-prev.done:
				prev = nil // committed: the read transaction sees it
			default:
			}
		}
		plan, base := e.planBatch(roomID, batch, prev)
		if len(plan) == 0 {
			continue
		}
		cur := newInflight(plan)
		cur.before = prev
		go func(prev *inflight) {
			if prev != nil {
				<-prev.done // commits in queue order
			}
			e.commitBatch(roomID, plan, base)
			close(cur.done)
		}(prev)
		prev = cur
	}
}

// inflight is a batch built and not yet committed: what the next batch
// builds on and must not repeat.
type inflight struct {
	done     chan struct{} // closed once its commit is over, whatever the outcome
	tip      string        // its last event's ID
	depth    int64         // and depth
	stateful bool          // it ends with a state event or a redaction
	txns     map[string]bool
	before   *inflight // the batch committed before it, until the builder has waited for it
}

func newInflight(plan []planned) *inflight {
	f := &inflight{done: make(chan struct{}), txns: map[string]bool{}}
	for _, pl := range plan {
		if pl.p.req.TxnID != "" {
			f.txns[string(txnKey(pl.p.req))] = true
		}
		if pl.pdu != nil {
			f.tip, f.depth = pl.pdu.EventID(), pl.pdu.Depth()
			f.stateful = pl.p.req.StateKey != nil || pl.p.req.Type == "m.room.redaction"
		}
	}
	return f
}

// blocks reports whether batch must wait for f's commit before it is built.
func (f *inflight) blocks(batch []*pendingSend) bool {
	if f.stateful || f.tip == "" {
		return true
	}
	for _, p := range batch {
		if p.req.TxnID != "" && f.txns[string(txnKey(p.req))] {
			return true
		}
	}
	return false
}

// nextBatch takes the sends of the next batch off q. When q is empty it
// returns nil, and removes the queue unless a batch is still committing
// (inFlight): a new builder for the room would build on a head that batch
// is about to move.
func (e *Engine) nextBatch(roomID string, q *roomQueue, inFlight bool) []*pendingSend {
	s := &e.seq
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(q.pending) == 0 {
		if !inFlight {
			delete(s.rooms, roomID)
		}
		return nil
	}
	n := min(len(q.pending), maxBatch)
	for i, p := range q.pending[:n] {
		if p.req.StateKey != nil || p.req.Type == "m.room.redaction" {
			n = i + 1 // it changes what the events after it are checked against
			break
		}
	}
	batch := q.pending[:n:n]
	q.pending = q.pending[n:]
	return batch
}

// planned is a send of the batch with the event built for it; dupOf is
// the index of an earlier send in the same batch with the same
// transaction ID, or -1.
type planned struct {
	p     *pendingSend
	pdu   gomatrixserverlib.PDU
	dupOf int
}

// sendBatch builds the batch's events in a read transaction and appends
// them in one write transaction.
func (e *Engine) sendBatch(roomID string, batch []*pendingSend) {
	if plan, base := e.planBatch(roomID, batch, nil); len(plan) > 0 {
		e.commitBatch(roomID, plan, base)
	}
}

// batchBase is the head a batch was built on, which its write transaction
// checks before appending the events as built.
type batchBase struct {
	lastPos uint64 // the room's last position as read (built on the stored head)
	// Built on an in-flight batch instead: its last event, its depth and
	// the state snapshot, which that batch of messages leaves as it was.
	onInflight bool
	tip        string
	depth      int64
	snapshot   uint64
}

// unmoved reports whether info, read in the write transaction, is still
// the head the batch was built on.
func (b batchBase) unmoved(info *Info) bool {
	if !b.onInflight {
		return info.LastPos == b.lastPos
	}
	return len(info.Extremities) == 1 && info.Extremities[0] == b.tip && info.Depth == b.depth &&
		info.Snapshot == b.snapshot
}

// planBatch builds the batch's events in a read transaction, on top of
// prev when a batch is still committing. Sends already answered (a
// context gone, a transaction sent before, a refusal) are finished here
// and left out of the plan.
func (e *Engine) planBatch(roomID string, batch []*pendingSend, prev *inflight) ([]planned, batchBase) {
	var plan []planned
	var base batchBase
	err := e.db.View(func(tx *store.Tx) error {
		info, err := roomInfo(tx, roomID)
		if err != nil {
			return err
		}
		base.lastPos = info.LastPos
		cur := *info // the head as the batch grows; info itself stays as read
		if prev != nil {
			cur.Extremities = []string{prev.tip}
			cur.Depth = prev.depth
			base = batchBase{onInflight: true, tip: prev.tip, depth: prev.depth, snapshot: info.Snapshot}
		}
		seen := map[string]int{}
		for _, p := range batch {
			if err := p.ctx.Err(); err != nil {
				p.finish("", err) // the client left before its turn: nothing was sent
				continue
			}
			var key string
			if p.req.TxnID != "" {
				key = string(txnKey(p.req))
				if j, ok := seen[key]; ok {
					plan = append(plan, planned{p: p, dupOf: j})
					continue
				}
			}
			id, err := e.sentBefore(tx, p.req)
			if err == nil && id == "" {
				id, err = e.unchangedState(tx, &cur, p.req)
			}
			if err != nil || id != "" {
				p.finish(id, err)
				continue
			}
			pdu, err := e.build(tx, &cur, p.req)
			if err != nil {
				p.finish("", err)
				continue
			}
			cur.Extremities = []string{pdu.EventID()}
			cur.Depth = pdu.Depth()
			if key != "" {
				seen[key] = len(plan)
			}
			plan = append(plan, planned{p: p, pdu: pdu, dupOf: -1})
		}
		return nil
	})
	if err != nil {
		for _, p := range batch {
			select {
			case <-p.done:
			default:
				p.finish("", err)
			}
		}
		return nil, base
	}
	return plan, base
}

// commitBatch appends the planned events in one write transaction and
// answers the batch's senders once it is durable.
func (e *Engine) commitBatch(roomID string, plan []planned, base batchBase) {
	ids := make([]string, len(plan))
	errs := make([]error, len(plan))
	var stored []*Event
	// The batch's senders wait for this commit whatever their contexts do:
	// once queued the events are sent, and acknowledged only when durable.
	err := e.db.Update(context.Background(), func(tx *store.Tx) error {
		// Update may run this more than once: results are reset each time.
		clear(ids)
		clear(errs)
		stored = stored[:0]
		info, err := roomInfo(tx, roomID)
		if err != nil {
			return err
		}
		moved := !base.unmoved(info) // another writer (a join, federation) appended, or the batch built on failed
		for i, pl := range plan {
			if pl.dupOf >= 0 {
				continue
			}
			pdu := pl.pdu
			if moved {
				// Build again in the write transaction, where the head
				// cannot move; the sends stay in their queue order.
				id, err := e.sentBefore(tx, pl.p.req)
				if err == nil && id == "" {
					id, err = e.unchangedState(tx, info, pl.p.req)
				}
				if err != nil {
					return err
				}
				if id != "" {
					ids[i] = id
					continue
				}
				if pdu, err = e.build(tx, info, pl.p.req); err != nil {
					errs[i] = err // this send's own refusal; the others go on
					continue
				}
			}
			ev, err := e.append(tx, info, pdu, &pl.p.req)
			if err != nil {
				return err
			}
			stored = append(stored, ev)
			ids[i] = pdu.EventID()
		}
		return putRoomInfo(tx, info)
	})
	if err == nil {
		// Push, the call agent and every woken /sync read these events
		// next: give them the parsed events rather than the JSON to parse.
		for _, ev := range stored {
			e.pdus.put(ev.NID, ev.ID, false, ev.PDU)
		}
	}
	for i, pl := range plan {
		switch {
		case err != nil:
			pl.p.finish("", err)
		case pl.dupOf >= 0:
			pl.p.finish(ids[pl.dupOf], errs[pl.dupOf])
		default:
			pl.p.finish(ids[i], errs[i])
		}
	}
}
