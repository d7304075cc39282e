package matrix

import (
	"context"
	"time"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/store"
)

// syncWatch, when set (by tests), is called each time a /sync builds a
// response up to position now (built), and each time a woken long poll
// goes back to waiting after ruling out everything up to now (!built).
var syncWatch func(userID string, now uint64, built bool)

// awaitNews blocks until the stream moves past (pos, eph) in a way that
// may concern c's /sync, or ctx ends. Every long poll is woken by every
// commit; one that only moved positions in rooms the user is not in (the
// common case on a server with many rooms) goes back to waiting after a
// look at those positions, instead of building a whole response to find
// it empty (room.Engine.SyncConcerns says what it rules out). A typing
// change always counts: the ephemeral counter carries no room.
func (s *Server) awaitNews(ctx context.Context, c *caller, pos, eph uint64) error {
	for {
		if err := s.rooms.Wait(ctx, pos, eph); err != nil {
			return err
		}
		now, nowEph := s.rooms.Pos()
		if nowEph != eph {
			return nil
		}
		if s.push != nil && now > pos {
			// Park at once until the push evaluator has published the new
			// events' counts, which the response needs anyway: woken by
			// the same commit, the 50 long polls of a room used to take
			// both cores for their SyncConcerns reads before the
			// evaluator ran, delaying every one of their responses.
			s.push.AwaitCounts(ctx, now)
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
