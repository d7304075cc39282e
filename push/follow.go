package push

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/hearth-chat/hearth/internal/store"
)

// The follower: the goroutine that evaluates every new event as the
// stream advances, holds the results for a larger commit and stores them
// beside its evaluation (store.go stores a batch; publish.go is what it
// makes visible meanwhile).

var keyPos = []byte("pos")

// follow evaluates every new event as the stream advances. It waits on the
// notifier, never polls, and keeps its position in bbolt so that after a
// restart it catches up on what it missed. A new file (no position yet)
// starts at the current position: history from before push existed is
// not notified.
func (s *Service) follow(ctx context.Context) {
	// However it ends (Stop, or an error it cannot get past), nothing will
	// publish results any more: long polls waiting in Ready go back to
	// waiting for the commit, and /sync counts for itself (Live).
	defer func() {
		s.running.Store(false)
		s.release(0)
	}()
	var pos uint64
	s.db.View(func(tx *store.Tx) error {
		pos = store.U64(tx.Get(store.PushMeta, keyPos))
		return nil
	})
	if pos == 0 {
		// Record the starting point at once, so that events written before
		// the first evaluation are not skipped after a crash.
		err := s.db.Update(ctx, func(tx *store.Tx) error {
			if pos = store.U64(tx.Get(store.PushMeta, keyPos)); pos == 0 {
				pos = tx.Pos()
				return tx.Put(store.PushMeta, keyPos, store.PutU64(pos))
			}
			return nil
		})
		if err != nil {
			s.log.Error("push: record start position", "err", err)
			return
		}
	}
	s.processed(pos)
	var (
		// unstored are the results evaluated and published, not yet
		// stored; the first inflight of them are being stored now.
		unstored []evaluated
		evalPos  = pos     // the position evaluation has reached
		since    time.Time // when the oldest result not in flight was evaluated
		urgent   bool      // a result not in flight is to be delivered to a pusher
		held     int       // results in unstored[inflight:]
		inflight int
		storing  *storeRun // the store in flight, nil if none
	)
	defer func() {
		if storing != nil {
			<-storing.done // Stop waits for the write it started
		}
	}()
	for {
		if storing != nil && storing.finished() {
			if err := storing.err; err != nil {
				storing, inflight, held = nil, 0, countResults(unstored)
				if ctx.Err() != nil {
					return
				}
				s.log.Error("push: store", "from", pos, "err", err)
				urgent = true // store them again, after news
				cur, eph := s.rooms.Pos()
				s.release(cur)
				if err := s.rooms.Wait(ctx, cur, eph); err != nil {
					return
				}
				continue
			}
			// The store moved the stored position itself (processed), at
			// its commit; the follower only drops what it held.
			unstored, pos = unstored[inflight:], storing.pos
			storing, inflight = nil, 0
			if len(unstored) > 0 {
				since = time.Now()
			}
		}
		cur, eph := s.rooms.Pos()
		full := len(unstored)-inflight >= batchSize || held >= batchResults // one commit's worth
		if cur > evalPos && !full {
			batch, next, err := s.evaluateBatch(evalPos, cur)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Error("push: evaluate", "from", evalPos, "err", err)
				if len(unstored) == 0 {
					// The same batch would fail again at once; wait for
					// news. Long polls waiting for these results go on.
					s.release(cur)
					if err := s.rooms.Wait(ctx, cur, eph); err != nil {
						return
					}
					continue
				}
				urgent = true // store what is held rather than wait with it
				if storing != nil {
					// The same batch would fail again at once: wait for
					// the store in flight first, not spin until it ends.
					select {
					case <-storing.done:
					case <-ctx.Done():
						return
					}
					continue
				}
			} else {
				if len(unstored) == inflight { // the first result not in flight
					since = time.Now()
				}
				unstored, evalPos = append(unstored, batch...), next
				held += countResults(batch)
				full = len(unstored)-inflight >= batchSize || held >= batchResults
				s.publish(unstored, evalPos)
				if !urgent {
					if urgent, err = s.storeNow(batch); err != nil {
						s.log.Error("push: find recipients with pushers", "err", err)
						urgent = true
					}
				}
			}
		}
		if evalPos > pos && len(unstored) == 0 {
			// Nothing evaluated (no event push considers) and nothing in
			// flight: nothing to store, and no commit for the position
			// alone.
			pos = evalPos
			s.processed(pos)
			continue
		}
		if storing != nil {
			// One store at a time, in order. Meanwhile evaluate what
			// arrives, so that a message committed during the store's
			// fsync is published at once: long polls wait for its count
			// (docs/performance.md, "Delivery: counts at commit and a
			// shared room section").
			if cur > evalPos && !full {
				continue
			}
			s.waitFollow(ctx, 0, cur, eph, storing.done, false)
			if ctx.Err() != nil {
				return
			}
			continue
		}
		if evalPos > pos {
			wait := storeDelay - time.Since(since)
			flushed := false
			select {
			case <-s.flush:
				flushed = true
			default:
			}
			if urgent || flushed || wait <= 0 || full {
				storing = s.startStore(ctx, unstored[:len(unstored):len(unstored)], evalPos)
				inflight, held, urgent = len(unstored), 0, false
				continue
			}
			if cur > evalPos {
				continue // evaluate what has arrived meanwhile
			}
			// Wait for more events, a flush request or the deadline.
			s.waitFollow(ctx, wait, cur, eph, nil, true)
			if ctx.Err() != nil {
				return
			}
			continue
		}
		if err := s.rooms.Wait(ctx, cur, eph); err != nil {
			return
		}
	}
}

// storeGate, when set (by tests), runs at the start of every store: it
// holds a store open to show what the follower does meanwhile.
var storeGate atomic.Pointer[func()]

// evalGate, when set (by tests), runs at the start of every evaluation by
// the follower: it holds the follower back to show what is published
// without it.
var evalGate atomic.Pointer[func()]

// storeRun is one store of held results, running beside the follower.
type storeRun struct {
	pos  uint64
	done chan struct{} // closed when err is final
	err  error
}

func (r *storeRun) finished() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// startStore stores batch up to pos from a goroutine of its own, so that
// the follower goes on evaluating and publishing while the write and its
// fsync run: a message committed meanwhile used to wait for the store
// (docs/performance.md, "Delivery: the critical path", what was left).
// On success the stored position moves at once (processed), which is
// what WaitEvaluated's callers wait for.
func (s *Service) startStore(ctx context.Context, batch []evaluated, pos uint64) *storeRun {
	r := &storeRun{pos: pos, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		if r.err = s.store(ctx, batch, pos); r.err == nil {
			s.counts.advance(batch, s.evaluated(), pos)
			s.processed(pos)
			s.maybePrune(ctx)
		}
	}()
	return r
}

// waitFollow waits until the stream moves past (cur, eph), ctx ends, the
// timeout d (if positive) passes, stored is closed (if not nil), or, with
// flushes, someone asks for the held results to be stored.
func (s *Service) waitFollow(ctx context.Context, d time.Duration, cur, eph uint64, stored <-chan struct{}, flushes bool) {
	wctx, cancel := context.WithCancel(ctx)
	if d > 0 {
		wctx, cancel = context.WithTimeout(ctx, d)
	}
	defer cancel()
	var flush <-chan struct{}
	if flushes {
		flush = s.flush
	}
	go func() {
		select {
		case <-flush:
			s.askToStore() // for the loop to see
			cancel()
		case <-stored:
			cancel()
		case <-wctx.Done():
		}
	}()
	s.rooms.Wait(wctx, cur, eph)
}

func countResults(batch []evaluated) int {
	n := 0
	for _, e := range batch {
		n += len(e.results)
	}
	return n
}

// storeDelay is how long evaluated results may wait in memory for more
// before they are stored, while events keep arriving: a federation peer
// sends a transaction every few milliseconds, and one commit for several
// transactions' notifications costs the store's single writer less than
// one per transaction, which it would spend while the next transaction
// waits for its own commit (issue 15). Nobody waits for the store as long
// as results are in memory: /sync reads them there (Live), and whatever
// needs them stored asks for it (WaitEvaluated, Notifications); a
// notification to deliver to a pusher is stored, and so queued, at once.
//
// A store writes a leaf of every recipient's range of the log (keyed by
// user first), whatever the number of events it holds: with 50 members
// in a room about 77 page writes a store. At 50 ms, in the /sync bench
// (a message every 10 ms), that was more than the messages' own commits
// (14 pages each); at 200 ms the log's page writes fall by 60% and the
// writer's per message from about 37 pages to 23. The cost is a longer
// list of published results for Live to scan per /sync (about 20 events
// at that rate) and more events to evaluate again after a crash.
const storeDelay = 200 * time.Millisecond

// askToStore asks the follower to store the results it holds now; the
// follower's waiting goroutine also uses it to hand a request it took on
// to the loop.
func (s *Service) askToStore() {
	select {
	case s.flush <- struct{}{}:
	default:
	}
}

// storeNow reports whether evaluated results must be stored without
// waiting: one of them is for a user with a pusher (delivery is queued in
// the same commit).
func (s *Service) storeNow(batch []evaluated) (bool, error) {
	found := false
	err := s.db.View(func(tx *store.Tx) error {
		c := tx.Cursor(store.Pushers)
		seen := map[string]bool{}
		for _, e := range batch {
			for _, r := range e.results {
				if seen[r.UserID] {
					continue
				}
				seen[r.UserID] = true
				prefix := store.Key(r.UserID, "")
				if k, _ := c.Seek(prefix); k != nil && hasPrefix(k, prefix) {
					found = true
					return nil
				}
			}
		}
		return nil
	})
	return found, err
}
