package appservice

import (
	"encoding/json"
)

// The fast path from the follower to a worker. An appservice that is
// keeping up has nothing queued and a worker waiting; making it wait
// for the follower's commit as well (an fsync, behind whatever else is
// written for the same event, push's counts first) put a commit between
// a human's send and the transaction. So for such an appservice the
// follower hands the events it is about to queue to the worker in
// memory, and the worker sends them while the follower's write commits;
// the worker then waits for that write before it records the outcome,
// exactly as for a transaction read from the store (an acknowledgement
// deletes the entries and moves the transaction counter; a failure
// stores the range for the retry). Nothing is lost: the events are in the timeline
// before the follower sees them, and a crash before the follower's
// write leaves its position where it was, so they are queued again
// after the restart and sent under the next transaction ID — the same
// window, a crash with a transaction in flight, in which an appservice
// can see an event twice as with any first attempt.

// handoff is one batch of events the follower passes to an idle worker.
type handoff struct {
	events []json.RawMessage // client-format events, in stream order
	// written is closed once the follower's write is over; upTo is then
	// the last queue seq it gave these events (0: the write failed, and
	// the follower will look at them again).
	written chan struct{}
	upTo    uint64
	done    bool // written closed (under q.mu)
	taken   bool // a worker took it (under q.mu)
}

// canHandOff reports whether id's events may skip the store on their
// way to its worker: nothing of id's is queued, being written or handed
// off. q.mu must be held.
func (q *Queue) canHandOff(id string, n int) bool {
	return n <= maxTxnEvents && n < q.maxQueued && q.counts[id] == 0 && q.writing[id] == 0 && q.handoffs[id] == nil
}

// takeHandoff returns id's hand-off if one waits for its worker. The
// follower makes one only while id has nothing queued, so the worker
// has no range of its own in flight or stored for a retry.
func (q *Queue) takeHandoff(id string) *handoff {
	q.mu.Lock()
	defer q.mu.Unlock()
	h := q.handoffs[id]
	if h == nil || h.taken {
		return nil
	}
	h.taken = true
	return h
}

// endHandoff forgets id's hand-off h once its outcome is recorded (and
// its write is over).
func (q *Queue) endHandoff(id string, h *handoff) {
	<-h.written
	q.mu.Lock()
	if q.handoffs[id] == h {
		delete(q.handoffs, id)
	}
	q.mu.Unlock()
}

// beginWrites marks ids as being written to by queueFor, after waiting
// out any hand-off whose write has not committed yet: entries written
// meanwhile would sort before the handed-off ones, and the worker's
// acknowledgement deletes everything of id up to those.
func (q *Queue) beginWrites(ids []string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, id := range ids {
		for {
			h := q.handoffs[id]
			if h == nil || h.done {
				break
			}
			q.mu.Unlock()
			<-h.written
			q.mu.Lock()
		}
		q.writing[id]++
	}
}

// endWrites undoes beginWrites.
func (q *Queue) endWrites(ids []string) {
	q.mu.Lock()
	for _, id := range ids {
		if q.writing[id]--; q.writing[id] <= 0 {
			delete(q.writing, id)
		}
	}
	q.mu.Unlock()
}
