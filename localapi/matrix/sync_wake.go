package matrix

import (
	"context"
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
// may concern c's /sync, or ctx ends. A long poll is woken by every
// commit; one that only moved positions in rooms the user is not in (the
// common case on a server with many rooms) goes back to waiting after a
// look at those positions, instead of building a whole response to find
// it empty (room.Engine.SyncConcerns says what it rules out). A typing
// change always counts: the ephemeral counter carries no room.
func (s *Server) awaitNews(ctx context.Context, c *caller, pos, eph uint64) error {
	for {
		now, typing, err := s.awaitMove(ctx, pos, eph)
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
func (s *Server) awaitMove(ctx context.Context, pos, eph uint64) (now uint64, typing bool, err error) {
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
		case <-ctx.Done():
			return 0, false, ctx.Err()
		}
		if t != nil {
			t.Stop()
		}
	}
	if err := s.rooms.Wait(ctx, pos, eph); err != nil {
		return 0, false, err
	}
	now, nowEph := s.rooms.Pos()
	return now, nowEph != eph, nil
}

// caughtUp reports whether a long poll may wait before building anything:
// its token is the current position of both counters, so the response
// would be empty in every section (each reports what happened in the span
// after the token, and typing what changed after its counter), and waiting
// is what the loop would do next. Without it every long poll built an
// empty response first, about as many builds as the ones after a wake-up
// (docs/performance.md, "Delivery: one response built once"). The one
// thing that build did besides is done here: the token acknowledges the
// to-device messages up to it, which are deleted (Client-Server API
// §"Send-to-Device messaging").
func (s *Server) caughtUp(c *caller, since syncToken, pos, eph uint64, fullState bool, timeout time.Duration) bool {
	if since.pos == 0 || fullState || timeout == 0 || since.pos != pos || since.eph != eph {
		return false
	}
	if s.keys != nil {
		if err := s.keys.AckToDevice(context.Background(), c.UserID, c.DeviceID, since.pos); err != nil {
			return false // build, which reports the error
		}
	}
	if syncWatch != nil {
		syncWatch(c.UserID, pos, false)
	}
	return true
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
