package matrix

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/store"
	"github.com/hearth-chat/hearth/push"
)

// syncWatch, when set (by tests), is called each time a /sync builds a
// response up to position now (built), and each time a woken long poll
// goes back to waiting after ruling out everything up to now (!built).
var syncWatch func(userID string, now uint64, built bool)

// awaitNews blocks until the stream moves past (pos, eph) in a way that
// may concern c's /sync, or the poll ends (its timeout, the client gone).
// A long poll is woken by every commit; one that only moved positions in
// rooms the user is not in (the common case on a server with many rooms)
// goes back to waiting after a look at those positions, instead of
// building a whole response to find it empty (room.Engine.SyncConcerns
// says what it rules out). A typing change always counts: the ephemeral
// counter carries no room.
func (s *Server) awaitNews(poll longPoll, c *caller, pos, eph uint64) error {
	for {
		now, typing, err := s.awaitMove(poll, pos, eph)
		if err != nil {
			return err
		}
		if typing {
			return nil
		}
		concerns, err := s.rooms.SyncConcerns(c.UserID, pos, now, func(ch store.Change) bool {
			return s.foreignChange(c, ch)
		})
		if err != nil || concerns {
			return nil // on error, build: it will report the error
		}
		if syncWatch != nil {
			syncWatch(c.UserID, now, false)
		}
		pos = now
	}
}

// awaitMove blocks until the typing counter moves from eph (typing), or
// the stream moves past pos; it returns the position to look at up to.
// With push running it waits for the push evaluator to have published
// the results of the new events rather than for their commit, and
// returns the position published: the response needs those counts
// (Client-Server API §"Receiving notifications": the count in the
// response that carries the event), and a room's long polls woken by the
// commit itself each took the CPU only to park again for them, while
// the evaluator they all waited for sat runnable behind them
// (docs/performance.md, "Delivery: the critical path").
func (s *Server) awaitMove(poll longPoll, pos, eph uint64) (now uint64, typing bool, err error) {
	if poll.ctx == nil {
		return 0, false, errPollOver // timeout 0: no wait
	}
	for s.push != nil {
		e, typed := s.rooms.EphemeralWatch()
		if e != eph {
			return 0, true, nil
		}
		ready, published, ok := s.push.Ready()
		if !ok {
			break // no evaluator: wait for the commit
		}
		if ready > pos {
			return ready, false, nil
		}
		var late <-chan time.Time
		var t *time.Timer
		if cur, _ := s.rooms.Pos(); cur > pos {
			// Committed but not evaluated yet: wait no longer than /sync
			// would wait for the counts anyway (Live counts them itself
			// after that); no timer for a poll with nothing committed, so
			// idle long polls never wake.
			t = time.NewTimer(push.LiveWait)
			late = t.C
		}
		select {
		case <-typed:
		case <-published:
		case <-late:
			now, _ := s.rooms.Pos()
			return now, false, nil
		case <-poll.expired:
			return 0, false, errPollOver
		case <-poll.ctx.Done():
			return 0, false, poll.ctx.Err()
		}
		if t != nil {
			t.Stop()
		}
	}
	ctx, cancel := context.WithDeadline(poll.ctx, poll.deadline)
	defer cancel()
	if err := s.rooms.Wait(ctx, pos, eph); err != nil {
		return 0, false, err
	}
	now, nowEph := s.rooms.Pos()
	return now, nowEph != eph, nil
}

// errPollOver ends a long poll whose timeout has passed.
var errPollOver = errors.New("long poll timed out")

// longPoll is what a /sync waits under: the request's context, which
// ends when the client goes away or the server stops, and its timeout.
// The zero value is a poll with timeout 0, which never waits.
type longPoll struct {
	ctx      context.Context
	expired  <-chan struct{} // closed once the timeout has passed
	deadline time.Time       // no later than when expired closes
	stop     func()
}

// pollSlot is how finely long polls' deadlines are told apart. A poll
// whose timeout is at least pollExactFrom ends at the start of the slot
// its deadline falls in, at most pollSlot early (the timeout is the
// longest the server may wait, Client-Server API §"GET /sync"), on a
// timer shared with every poll due in that slot: 50 clients re-polling
// after each message made a context and a runtime timer each, per
// message, where one slot's timer serves them all.
const (
	pollSlot      = 100 * time.Millisecond
	pollExactFrom = time.Second
)

// pollDeadlines hands out the timeouts of long polls; the zero value is
// ready.
type pollDeadlines struct {
	mu    sync.Mutex
	base  time.Time               // slots count from here, on the monotonic clock
	slots map[int64]chan struct{} // slot → closed when it starts
}

// start returns the poll for a request with ctx and timeout (> 0).
func (d *pollDeadlines) start(ctx context.Context, timeout time.Duration) longPoll {
	now := time.Now()
	if timeout < pollExactFrom {
		ch := make(chan struct{})
		t := time.AfterFunc(timeout, func() { close(ch) })
		return longPoll{ctx: ctx, expired: ch, deadline: now.Add(timeout), stop: func() { t.Stop() }}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.slots == nil {
		d.base, d.slots = now, map[int64]chan struct{}{}
	}
	slot := int64(now.Add(timeout).Sub(d.base) / pollSlot)
	at := d.base.Add(time.Duration(slot) * pollSlot)
	ch := d.slots[slot]
	if ch == nil {
		ch = make(chan struct{})
		d.slots[slot] = ch
		time.AfterFunc(at.Sub(now), func() {
			d.mu.Lock()
			delete(d.slots, slot)
			d.mu.Unlock()
			close(ch)
		})
	}
	return longPoll{ctx: ctx, expired: ch, deadline: at, stop: noStop}
}

func noStop() {}

// caughtUp reports whether a long poll may wait before building anything:
// its token is the current position of both counters, so the response
// would be empty in every section (each reports what happened in the span
// after the token, and typing what changed after its counter), and waiting
// is what the loop would do next. Without it every long poll built an
// empty response first, about as many builds as the ones after a wake-up
// (docs/performance.md, "Delivery: one response built once"). The one
// thing that build did besides is done here: the token acknowledges the
// to-device messages up to it, which are deleted (Client-Server API
// §"Send-to-Device messaging"), unless the device is known to have none
// queued up to it.
func (s *Server) caughtUp(c *caller, since syncToken, pos, eph uint64, fullState bool, timeout time.Duration) bool {
	if since.pos == 0 || fullState || timeout == 0 || since.pos != pos || since.eph != eph {
		return false
	}
	if s.keys != nil && !s.drained.upTo(c, since.pos) {
		if err := s.keys.AckToDevice(context.Background(), c.UserID, c.DeviceID, since.pos); err != nil {
			return false // build, which reports the error
		}
		s.drained.mark(c, since.pos)
	}
	if syncWatch != nil {
		syncWatch(c.UserID, pos, false)
	}
	return true
}

// drainedToDevice remembers, per device, a stream position up to which
// it has no to-device message queued: a /sync response that carried none
// (it acknowledged those up to its since, and found none after), or an
// acknowledgement. A message is queued at a new stream position
// (e2ee.Service.SendToDevice), after any position a response was built
// up to, so the fact stays true; a caught-up long poll with a since up to
// that position skips the read transaction that would look for messages
// to delete, which every caught-up poll of a room's clients made after
// every message. The zero value is ready.
type drainedToDevice struct {
	mu  sync.Mutex
	pos map[deviceKey]uint64
}

type deviceKey struct{ user, device string }

// maxDrained bounds the map; past it, it starts over, which costs each
// device one read.
const maxDrained = 4096

func (d *drainedToDevice) mark(c *caller, pos uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pos == nil || len(d.pos) >= maxDrained {
		d.pos = map[deviceKey]uint64{}
	}
	k := deviceKey{c.UserID, c.DeviceID}
	d.pos[k] = max(d.pos[k], pos)
}

func (d *drainedToDevice) upTo(c *caller, pos uint64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pos[deviceKey{c.UserID, c.DeviceID}] >= pos
}

// foreignChange reports change-log entries of account and presence that
// certainly do not show in c's /sync: another user's private account data,
// and the presence of a local user c shares no room with (as presence.since
// filters them).
func (s *Server) foreignChange(c *caller, ch store.Change) bool {
	switch ch.Kind {
	case account.ChangeAccountData:
		return ch.Localpart != "" && ch.Localpart != c.Localpart
	case account.ChangePresence:
		return ch.Key != c.Localpart && !s.rooms.SharesRoom(c.UserID, s.accounts.UserID(ch.Key))
	}
	return false
}

// inviteHiderIn is SyncRequest.HideInviteIn for a local user: invites
// their config ignores, or blocks (those stored before the rule), stay out
// of /sync (MSC4155). It reads the config in the /sync's own transaction, and
// only for a response that holds an invite: reading the config for every
// /sync cost a transaction each (a sixth of a woken long poll's build).
func inviteHiderIn(localpart string) func(tx *store.Tx, sender string) bool {
	return func(tx *store.Tx, sender string) bool {
		return account.InviteRulesIn(tx, localpart).Action(sender) != account.InviteAllow
	}
}
