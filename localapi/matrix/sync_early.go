package matrix

import (
	"github.com/hearth-chat/hearth/internal/room"
)

// The response a room's long polls share (sync_shared.go) was built by the
// first of them to wake, after the message's commit was durable. The
// server instead prepares it while the commit runs (room.EarlySync,
// internal/room/sync_early.go), from the response kept for the span before:
// a span of shape differs from the one before it only in its tokens and
// its room's entry (the timeline, and lazy loading's member events). What
// follows the room's unread counts (the other sections, all empty for such
// a span, and the key counts' place) is the previous response's, for the
// same filter and state mode. TestPreparedSyncIsOwnBuild holds a prepared
// response to what a build of the same span gives.

// earlySyncer is the room engine's side of it (*room.Engine).
type earlySyncer interface{ SetEarlySync(room.EarlySync) }

// maxPrepared bounds the responses prepared for one message: one per
// token, filter and state mode the room's long polls used on the span
// before.
const maxPrepared = 4

// preparer is the room.EarlySync the server installs.
type preparer struct{ s *Server }

func (p preparer) Wants(roomID string) bool { return p.s.shared.keptFor(roomID) }

func (p preparer) Prepare(span *room.EarlySpan) (keep func()) { return p.s.prepareShared(span) }

// prepareShared prepares the responses for span (room.EarlySync's Prepare).
func (s *Server) prepareShared(span *room.EarlySpan) (keep func()) {
	shape := span.Shape()
	var next []*sharedSync
	for _, p := range s.shared.endingAt(shape.RoomID, span.Since(), maxPrepared) {
		since := p.key.now
		now := syncToken{pos: span.Since() + 1, eph: since.eph}
		req := room.SyncRequest{StateAfter: p.key.mode.any()}
		roomData := p.f.roomRequest(&req)
		jr, err := span.Joined(req)
		if err != nil || jr == nil || len(jr.Timeline.Events) == 0 {
			continue // the filter leaves the message out: nothing to share
		}
		head, ok := sharedHead(now, shape.RoomID, s.joinedEntry(p.f, p.key.mode, roomData, jr, nil))
		if !ok {
			continue
		}
		next = append(next, &sharedSync{key: sharedKey{since: since, now: now, filter: p.key.filter, mode: p.key.mode},
			f: p.f, shape: shape, head: head, mid: p.mid})
	}
	if len(next) == 0 {
		return nil
	}
	return func() {
		for _, n := range next {
			if s.shared.keep(n) {
				s.shared.prepared.Add(1)
			}
		}
	}
}

// sharedHead is the start of a response of one joined room, up to the
// room's unread counts, as writeBuilt cuts it.
func sharedHead(now syncToken, roomID string, entry joinedRoom) ([]byte, bool) {
	cuts := &syncCuts{}
	buf := getSyncBuf()
	defer putSyncBuf(buf)
	resp := &syncResponse{NextBatch: now.String(), Rooms: syncRooms{Join: map[string]joinedRoom{roomID: entry}}}
	if err := encodeSync(syncEncoder{b: buf, cuts: cuts}, resp); err != nil || cuts.unreadFrom > maxKeptSync {
		return nil, false
	}
	return append([]byte(nil), buf.Bytes()[:cuts.unreadFrom]...), true
}

// keptFor reports whether a response of roomID's shape is kept.
func (m *sharedSyncs) keptFor(roomID string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.ring {
		if s != nil && !m.off && s.shape.RoomID == roomID {
			return true
		}
	}
	return false
}

// endingAt returns up to n of the responses kept for a span of roomID's
// shape ending at pos, one per token, filter and state mode.
func (m *sharedSyncs) endingAt(roomID string, pos uint64, n int) []*sharedSync {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*sharedSync
	for _, s := range m.ring {
		if s == nil || s.key.now.pos != pos || s.shape.RoomID != roomID || m.off {
			continue
		}
		dup := false
		for _, o := range out {
			dup = dup || (o.key.now == s.key.now && o.key.filter == s.key.filter && o.key.mode == s.key.mode)
		}
		if !dup && len(out) < n {
			out = append(out, s)
		}
	}
	return out
}
