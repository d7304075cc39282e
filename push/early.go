package push

import (
	"github.com/hearth-chat/hearth/internal/room"
)

// Counts at the commit. The follower evaluates an event only after its
// commit has woken it and it has been scheduled, behind everything else
// the commit woke, and read the event back: about 0.55 ms from commit to
// published at p50 on a loaded machine, while every long poll of the room
// waited (docs/performance.md, "Delivery: counts at commit and a shared
// room section"). The room's sequencer instead hands push a batch of
// message events it built (room.EarlyPush) before committing it; push
// evaluates them while the write and its fsync run, and the results are
// published on the store's writer as soon as the commit has advanced the
// stream, before the senders are answered. The follower later
// takes these results rather than evaluating the events again, and
// stores them as usual.

// earlyPusher is the room engine's side of it (*room.Engine).
type earlyPusher interface{ SetEarlyPush(room.EarlyPush) }

// maxEarly bounds the results published early and not yet taken by the
// follower (it takes them as it passes their positions).
const maxEarly = 1024

// earlyEvaluate is the room.EarlyPush push installs while it runs.
func (s *Service) earlyEvaluate(pes []*room.PushEvent) func() {
	if !s.running.Load() {
		return nil
	}
	batch := make([]evaluated, len(pes))
	for i, pe := range pes {
		res, err := s.eval.Evaluate(pe)
		if err != nil {
			return nil // the follower will meet the error and report it
		}
		batch[i] = evaluated{pe, res}
	}
	return func() { s.publishEarly(batch) }
}

// publishEarly publishes a committed batch's results, whose positions are
// set now, if they follow on from what is published already: Ready and
// pending must cover every position up to the one they report, and a gap
// (another write's position, or the follower still behind) leaves the
// batch to the follower.
func (s *Service) publishEarly(batch []evaluated) {
	if len(batch) == 0 || !s.running.Load() {
		return
	}
	s.doneMu.Lock()
	defer s.doneMu.Unlock()
	next := max(s.donePos, s.memPos) + 1
	if len(s.early)+len(batch) > maxEarly {
		return
	}
	for i, e := range batch {
		if e.pe.Pos != next+uint64(i) {
			return
		}
	}
	s.early = append(s.early, batch...)
	s.pending = append(s.pending[:len(s.pending):len(s.pending)], batch...)
	s.memPos = batch[len(batch)-1].pe.Pos
	close(s.doneCh)
	s.doneCh = make(chan struct{})
	s.moveReady()
}

// takeEarly returns the results published early for the event pe, which
// the follower is evaluating, and forgets those for positions up to it.
func (s *Service) takeEarly(pe *room.PushEvent) ([]Result, bool) {
	s.doneMu.Lock()
	defer s.doneMu.Unlock()
	for len(s.early) > 0 && s.early[0].pe.Pos < pe.Pos {
		s.early = s.early[1:]
	}
	if len(s.early) == 0 || s.early[0].pe.Pos != pe.Pos {
		return nil, false
	}
	e := s.early[0]
	s.early = s.early[1:]
	if e.pe.Event.EventID != pe.Event.EventID {
		return nil, false
	}
	return e.results, true
}

// earlyAfter are the results published early past upto, which a
// publication of the follower's up to upto must keep in pending; doneMu
// is held.
func (s *Service) earlyAfter(upto uint64) []evaluated {
	for i, e := range s.early {
		if e.pe.Pos > upto {
			return s.early[i:]
		}
	}
	return nil
}
