package room

import (
	"context"
	"log/slog"
	"runtime/debug"
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

// enqueue adds p to its room's queue. If the room had no builder, the
// caller is its builder now: enqueue returns the queue, and the caller
// must call buildFirst with it. The builder exits when the queue is
// empty, so an idle server has no goroutine per room.
func (e *Engine) enqueue(p *pendingSend) *roomQueue {
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
	if running {
		return nil
	}
	return q
}

// buildFirst is the builder of a room whose queue the calling sender
// started: it builds the first batch, which holds the caller's own send,
// in the caller's goroutine, and hands any sends queued since to a
// builder goroutine. With one sender per room (the common case) a send
// then starts no goroutine: a new goroutine per send grew its stack from
// the minimum on every batch, 3% of the daemon's CPU with 32 senders in
// separate rooms, and cost two more wake-ups per send
// (docs/performance.md, "Separate rooms: CPU per event").
//
// A panic while building must not be recovered by net/http's per-request
// recover, which would leave the room's queue marked running with no
// builder, and every later send to the room waiting for ever: it ends the
// process, as it did when every batch was built in a goroutine of its own.
func (e *Engine) buildFirst(roomID string, q *roomQueue) {
	defer func() {
		if r := recover(); r != nil {
			slog.Error("room: sequencer", "room_id", roomID, "panic", r, "stack", string(debug.Stack()))
			go func() { panic(r) }()
			select {} // the process ends with the panic above
		}
	}()
	batch := e.nextBatch(roomID, q)
	if batch == nil {
		return
	}
	e.sendBatch(roomID, batch)
	if next := e.nextBatch(roomID, q); next != nil {
		go func() {
			e.sendBatch(roomID, next)
			e.buildRoom(roomID, q)
		}()
	}
}

// buildRoom is a room's builder: it sends batch after batch until the
// queue is empty. The next batch starts after the previous one's commit,
// so its read transaction sees every transaction ID already sent.
func (e *Engine) buildRoom(roomID string, q *roomQueue) {
	for {
		batch := e.nextBatch(roomID, q)
		if batch == nil {
			return
		}
		e.sendBatch(roomID, batch)
	}
}

// nextBatch takes the sends of the next batch off q, or removes the queue
// and returns nil when it is empty.
func (e *Engine) nextBatch(roomID string, q *roomQueue) []*pendingSend {
	s := &e.seq
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(q.pending) == 0 {
		delete(s.rooms, roomID)
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
	var plan []planned
	var head uint64
	var joined int
	txns := txnIndexOf(e.db)
	merges := txns.mergesDone() // before the read: see sentMeanwhile
	err := e.db.View(func(tx *store.Tx) error {
		info, err := roomInfo(tx, roomID)
		if err != nil {
			return err
		}
		head, joined = info.LastPos, info.Joined
		cur := *info // the head as the batch grows; info itself stays as read
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
		return
	}
	if len(plan) == 0 {
		return
	}
	ids := make([]string, len(plan))
	errs := make([]error, len(plan))
	var stored []*Event
	// Push evaluates the batch while it is committed (follow_push_early.go).
	pdus := plannedPDUs(plan)
	early := e.startEarlyPush(roomID, head, joined, pdus)
	// So does /sync its room's response (sync_early.go).
	earlySync := e.startEarlySync(roomID, joined, pdus)
	// Once enough transaction IDs are pending, this batch's write moves
	// them into their index as well (store_txns.go).
	merge := txns.startMerge()
	if merge {
		defer txns.endMerge()
	}
	// The batch's senders wait for this commit whatever their contexts do:
	// once queued the events are sent, and acknowledged only when durable.
	err = e.db.Update(context.Background(), func(tx *store.Tx) error {
		// Update may run this more than once: results are reset each time.
		clear(ids)
		clear(errs)
		stored = stored[:0]
		info, err := roomInfo(tx, roomID)
		if err != nil {
			return err
		}
		if merge {
			if err := txns.merge(tx); err != nil { // store_txns.go
				return err
			}
		}
		// Another writer (a join, federation) appended, or a transaction
		// ID the read transaction missed is known now.
		moved := info.LastPos != head
		if !moved && txns.mergesDone() != merges {
			if moved, err = sentMeanwhile(tx, txns, plan); err != nil {
				return err
			}
		}
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
		// Push, the call agent, search and every woken /sync read these
		// events next: give them the parsed events rather than the JSON to
		// parse. On the writer, before the commit wakes them: put after
		// Update returned, the followers woken by the commit often got
		// there first and parsed each event again.
		tx.OnCommit(func() {
			for _, ev := range stored {
				e.pdus.put(ev.NID, ev.ID, false, ev.PDU)
			}
		})
		if earlySync != nil {
			// Before the counts below, which wake the room's long polls.
			tx.AfterCommit(func() { earlySync.committed(stored) })
		}
		if early != nil {
			// Every long poll of the room waits for these counts: they
			// are handed on by the writer as soon as the stream has
			// advanced, not after this goroutine is scheduled again.
			tx.AfterCommit(func() { early.committed(stored) })
		}
		return putRoomInfo(tx, info)
	})
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

// sentMeanwhile reports whether a planned send's transaction ID has an
// event now, in the write transaction. The read transaction the batch was
// built in can miss one when a merge (by another room's builder) became
// durable meanwhile: it takes keys out of the in-memory index that that
// read's snapshot of txns does not have yet (store_txns.go). Only then is
// it asked; the batch is then built again where nothing can move.
func sentMeanwhile(tx *store.Tx, txns *txnIndex, plan []planned) (bool, error) {
	for _, pl := range plan {
		if pl.dupOf >= 0 || pl.p.req.TxnID == "" {
			continue
		}
		nid, err := txns.lookup(tx, txnKey(pl.p.req))
		if err != nil || nid != 0 {
			return nid != 0, err
		}
	}
	return false, nil
}
