package push

import "context"

// What the follower has published and stored, and the waiting on it:
// /sync reads published results from memory (pending, Live), long polls
// wait on Ready, tests and GET /notifications on the stored position.

func (s *Service) evaluated() uint64 {
	s.doneMu.Lock()
	defer s.doneMu.Unlock()
	return s.donePos
}

func (s *Service) processed(pos uint64) {
	s.doneMu.Lock()
	defer s.doneMu.Unlock()
	if pos > s.donePos {
		s.donePos = pos
		// What is stored now leaves pending; results published after the
		// store began stay (the store runs beside the follower).
		keep := s.pending[:0:0]
		for _, e := range s.pending {
			if e.pe.Pos > pos {
				keep = append(keep, e)
			}
		}
		s.pending = keep
		close(s.doneCh)
		s.doneCh = make(chan struct{})
		s.moveReady()
	}
}

// publish makes a batch's results visible to /sync before they are
// stored: the commit (and its fsync) would otherwise delay every count.
func (s *Service) publish(batch []evaluated, upto uint64) {
	s.doneMu.Lock()
	defer s.doneMu.Unlock()
	// Results published early past upto stay (early.go); the three-index
	// slice keeps the follower's own slice from being appended to.
	s.pending, s.memPos = append(batch[:len(batch):len(batch)], s.earlyAfter(upto)...), max(s.memPos, upto)
	close(s.doneCh)
	s.doneCh = make(chan struct{})
	s.moveReady()
}

// moveReady wakes Ready's waiters if its position moved; doneMu is held.
func (s *Service) moveReady() {
	if r := max(s.donePos, s.memPos, s.released); r > s.readyPos {
		s.readyPos = r
		close(s.readyCh)
		s.readyCh = make(chan struct{})
	}
}

// release lets long polls waiting in Ready go on up to pos without the
// results of the events there (after an error: they count them
// themselves), and wakes every waiter.
func (s *Service) release(pos uint64) {
	s.doneMu.Lock()
	defer s.doneMu.Unlock()
	s.released = max(s.released, pos)
	close(s.doneCh)
	s.doneCh = make(chan struct{})
	s.readyPos = max(s.readyPos, pos)
	close(s.readyCh) // always: Stop uses it to say the evaluator is gone
	s.readyCh = make(chan struct{})
}

// Ready returns the stream position up to which the evaluator has
// published the results of every event (or given up on them, see
// release), and a channel closed when that may have moved; ok is false
// when the evaluator is not running, and nothing would move it. A /sync
// long poll waits on this instead of the commit itself (docs/architecture.md,
// "/sync"): woken together by the commit, a room's 50 long polls used to
// take both cores only to park again for these results, delaying the
// evaluator they were waiting for (docs/performance.md, "Delivery: the
// critical path").
func (s *Service) Ready() (pos uint64, changed <-chan struct{}, ok bool) {
	if !s.running.Load() {
		return 0, nil, false
	}
	s.doneMu.Lock()
	defer s.doneMu.Unlock()
	return s.readyPos, s.readyCh, true
}

// inMemory reports whether results up to pos are stored or published.
func (s *Service) inMemory(pos uint64) bool {
	s.doneMu.Lock()
	defer s.doneMu.Unlock()
	return s.donePos >= pos || s.memPos >= pos
}

// waitInMemory waits until results up to pos are stored or published.
func (s *Service) waitInMemory(ctx context.Context, pos uint64) {
	for {
		s.doneMu.Lock()
		ok, ch := s.donePos >= pos || s.memPos >= pos, s.doneCh
		s.doneMu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

// WaitEvaluated blocks until the evaluator has stored the results of every
// event up to pos, or ctx ends. Tests and the benchmark use it to know
// when counts are final without sleeping.
func (s *Service) WaitEvaluated(ctx context.Context, pos uint64) error {
	if !s.running.Load() {
		return nil // nothing would ever advance it
	}
	s.askToStore() // results held for a larger commit are stored now
	for {
		s.doneMu.Lock()
		done, ch := s.donePos, s.doneCh
		s.doneMu.Unlock()
		if done >= pos {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
