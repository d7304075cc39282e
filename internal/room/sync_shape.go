package room

import "github.com/hearth-chat/hearth/internal/store"

// After a message, every long poll of its room is woken for the same span
// (since, now], and their responses differ only where a response is
// per user: unread counts, one-time key counts, and whatever syncJoined
// and clientEvent decide by viewer. /sync (localapi/matrix/sync_shared.go)
// builds one of them in full and gives the others its bytes with their
// own counts, when the span and each user qualify (issue 15: "encode a
// response once per shape and share it"). This file decides both, from
// the store, by the rules those functions apply per viewer:
//
//   - history visibility (syncTimeline's canSee): a user joined since
//     before the span sees every event of it, whatever the visibility;
//   - ignored senders (Client-Server API §"Ignoring Users"): a user who
//     ignores none of the span's senders sees all of its events;
//   - unsigned.transaction_id and MSC4140's delay_id go to the sender
//     alone, so a sender is never shared with;
//   - bundled aggregations (bundle) and redacted_because depend on the
//     viewer's history, and erasure on the viewer's membership: a span
//     whose events have no relation children, no redaction and no erased
//     sender has none of them;
//   - the state section, the summary, new members and device-list
//     changes follow state and member events: a span of message events
//     in a room the user was joined to before it has none (lazy loading's
//     member events are the senders' own, the same for every viewer).
//
// Receipts, typing, account data, presence, to-device messages and
// device-list changes all take stream positions of their own (typing its
// own counter, which /sync compares), so a span whose every position is a
// message of one room holds none of them, and no other room has news.

// maxSharedSpan bounds the positions a shape is read from: the span of a
// long poll woken by one commit is a few positions, and a longer one is a
// client catching up, whose response is its own.
const maxSharedSpan = 32

// SpanShape is a span (since, now] every position of which is a message
// event of one room that all of the room's users joined since before the
// span see alike (see above). Sync finds it (SyncRequest.Share), and
// SyncShared, or SharedFromMemory without a read, checks another user
// against it.
type SpanShape struct {
	RoomID  string
	roomNID uint64
	senders map[string]bool
}

// shareable reports whether req is a request whose rooms section can be
// another's: incremental, not full state, and with no typing change
// (typing takes no stream position, so the span's shape cannot rule it
// out).
func shareable(req SyncRequest) bool {
	return req.Since != 0 && req.Now > req.Since && req.Now-req.Since <= maxSharedSpan &&
		!req.FullState && req.SinceEph == req.NowEph
}

// shapeIn reads the shape of req's span in tx, nil if it has none.
func (e *Engine) shapeIn(tx *store.Tx, req SyncRequest) (*SpanShape, error) {
	since, now := req.Since, req.Now
	if !shareable(req) {
		return nil, nil
	}
	first := tx.Get(store.Events, store.PutU64(since+1))
	if first == nil {
		return nil, nil // a position that is no event: a change, a to-device message
	}
	ev, err := decodeEvent(since+1, first)
	if err != nil {
		return nil, err
	}
	s := &SpanShape{roomNID: ev.RoomNID, senders: map[string]bool{}}
	// The room's timeline must hold every position of the span, each its
	// own event (not an event placed there from elsewhere, as backfill
	// places history).
	next, ok := since+1, true
	err = scan(tx, store.Timeline, store.PutU64(s.roomNID), since, Forward, func(pos uint64, v []byte) (bool, error) {
		if pos > now {
			return false, nil
		}
		if pos != next || timelineNID(pos, v) != pos {
			ok = false
			return false, nil
		}
		ev, err := e.loadEvent(tx, pos)
		if err != nil {
			return false, err
		}
		sender, shared := e.sharedEvent(tx, ev)
		if !shared {
			ok = false
			return false, nil
		}
		s.senders[sender] = true
		next++
		return true, nil
	})
	if err != nil || !ok || next != now+1 {
		return nil, err
	}
	if ok, err := e.sendersShared(tx, s, now); err != nil || !ok {
		return nil, err
	}
	info, err := roomInfoByNID(tx, s.roomNID)
	if err != nil {
		return nil, err
	}
	s.RoomID = info.ID
	return s, nil
}

// sharedEvent reports whether ev is served alike to every user joined to
// its room throughout (see the top of the file), and returns its sender.
func (e *Engine) sharedEvent(tx *store.Tx, ev *Event) (string, bool) {
	p := ev.PDU
	sender := string(p.SenderID())
	if !storedAlike(ev) || p.StateKey() != nil || p.Type() == "m.room.redaction" || hasRelations(tx, ev) {
		return "", false
	}
	if _, erased := e.erasedAt(tx, sender); erased {
		return "", false
	}
	return sender, true
}

// storedAlike reports whether ev's record leaves its client form the
// same for every viewer: not redacted, rejected or held apart from the
// room's own history, and no state it replaced (prev_content).
func storedAlike(ev *Event) bool {
	const notShared = flagRedacted | flagRejected | flagOutlier | flagRelay | flagStateless | flagHistorical
	return ev.Flags&notShared == 0 && ev.RedactedBy == 0 && ev.Replaces == 0
}

// sendersShared reports whether the member event lazy loading adds for
// each of the span's senders is served alike to every user: set by the
// sender, neither redacted nor related to.
func (e *Engine) sendersShared(tx *store.Tx, s *SpanShape, now uint64) (bool, error) {
	for sender := range s.senders {
		m, err := e.currentStateEvent(tx, s.roomNID, "m.room.member", sender)
		if err != nil {
			return false, err
		}
		if m == nil || m.NID > now {
			continue // lazyMembers leaves it out for everyone
		}
		if string(m.PDU.SenderID()) != sender || m.RedactedBy != 0 || hasRelations(tx, m) {
			return false, nil
		}
	}
	return true, nil
}

// hasRelations reports whether any event relates to ev (bundle's input).
func hasRelations(tx *store.Tx, ev *Event) bool {
	prefix := relationsPrefix(ev.RoomNID, ev.NID)
	k, _ := tx.Cursor(store.Relations).Seek(prefix)
	return k != nil && hasPrefix(k, prefix)
}

// sharedWith reports, inside tx, whether userID sees the span as every
// other user sharedWith accepts: joined to its room since at or before
// since (the position the span starts after), and neither a sender of its
// events nor ignoring one; and if so, the user's membership record. A
// user found joined is remembered for SharedFromMemory.
func (e *Engine) sharedWith(tx *store.Tx, s *SpanShape, userID string, since uint64, ignored map[string]bool) (Membership, bool) {
	if !s.sendersAllow(userID, ignored) {
		return Membership{}, false
	}
	m := decodeMembership(s.roomNID, tx.Get(store.Members, memberKey(userID, s.roomNID)))
	if m.Membership != "join" || m.Pos > since || m.Forgotten {
		return Membership{}, false
	}
	e.joined.note(userID, s.roomNID, m.Pos, tx.Pos())
	return m, true
}

// sendersAllow reports whether userID is neither a sender of the span's
// events nor ignores one.
func (s *SpanShape) sendersAllow(userID string, ignored map[string]bool) bool {
	if s.senders[userID] {
		return false
	}
	for sender := range s.senders {
		if ignored[sender] {
			return false
		}
	}
	return true
}

// SyncShared is Sync for a user whose rooms section would be the one a
// Sync of the same span and filter found shared (SyncRooms.Shape): it
// reads only whether the user qualifies, and if so calls req.Also in the
// same read transaction with the rooms section that user's Sync would
// have reported (the shape's room, its section left to the caller), and
// returns true. Nothing is read of the user's other rooms: no position of
// the span is theirs. Active is empty: the one room whose timeline moved
// is in the section whether or not it notified the user.
func (e *Engine) SyncShared(req SyncRequest, s *SpanShape) (bool, error) {
	if !shareable(req) {
		return false, nil
	}
	ok := false
	err := e.db.View(func(tx *store.Tx) error {
		ignored := req.Ignored
		if ignored == nil && req.IgnoredIn != nil {
			ignored = req.IgnoredIn(tx)
		}
		if _, ok := e.sharedWith(tx, s, req.UserID, req.Since, ignored); !ok {
			return nil
		}
		ok = true
		if req.Also == nil {
			return nil
		}
		return req.Also(tx, &SyncRooms{Join: map[string]*JoinedRoom{s.RoomID: {}}, Active: []string{}})
	})
	return ok && err == nil, err
}

// syncShaped fills out for a span of shape whose user qualifies, and
// reports whether it did. Every position of the span is a message of the
// shape's room, and the user was joined to it throughout (see the top of
// the file), so each other room Sync would look at has nothing for it:
// a joined room has no event, receipt or state move in the span
// (quietJoined; a typing change after the token's counter waits for the
// next /sync, whose token it is after), and an invite, a knock or a leave
// would be a member event in the span. Only the shape's room is read,
// as Sync reads it: a user in hundreds of rooms, woken by a message in
// one, reads that one.
func (e *Engine) syncShaped(tx *store.Tx, req SyncRequest, out *SyncRooms) (bool, error) {
	s, err := e.shapeIn(tx, req)
	if err != nil || s == nil {
		return false, err
	}
	m, ok := e.sharedWith(tx, s, req.UserID, req.Since, req.Ignored)
	if !ok {
		return false, nil
	}
	out.Shape = s
	if !roomWanted(req, s.RoomID) {
		return true, nil
	}
	out.Active = append(out.Active, s.RoomID)
	info, err := roomInfoByNID(tx, s.roomNID)
	if err != nil {
		return false, err
	}
	jr, err := e.syncJoined(tx, req, info, m, nil, false)
	if err != nil {
		return false, err
	}
	if jr != nil {
		out.Join[info.ID] = jr
	}
	return true, nil
}
