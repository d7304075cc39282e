package matrix

import (
	"bytes"
	"context"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/push"
)

// A message wakes every long poll of its room, and each would build the
// same response for the same span but for its user's unread counts and
// its device's key counts (issue 15: "encode a response once per shape
// and share it"). The first poll whose span and user qualify builds and
// encodes its response in full, and keeps it cut around those two parts;
// the polls after it with the same tokens and filter check their user
// against the span and write the kept bytes with their own counts. The
// check and the counts come from memory when every memo proves it still
// holds (userPartFromMemory), else from one read transaction
// (room.Engine.SyncShared), which refills the memos. When the span or the
// user does not qualify the poll builds its own response, as before. internal/room/sync_shape.go says
// which spans and users qualify and why the rest of the response is then
// the same for all of them.
//
// A user's response built from another's is the one its own build would
// have given, the time-dependent parts aside: unsigned.age is the first
// build's, and a redaction or relation committed after the span's end,
// between the two builds, shows in the next response rather than this
// one.

// sharedKey is what a kept response answers: the request's tokens,
// filter and state mode (full_state is never shared).
type sharedKey struct {
	since, now syncToken
	filter     string
	mode       stateMode
}

// sharedSync is one kept response: its bytes up to its room's unread
// counts (head), and from after them up to the key counts (mid). f is the
// filter key.filter names, parsed.
type sharedSync struct {
	key       sharedKey
	f         *filter
	shape     *room.SpanShape
	head, mid []byte
}

// maxKeptSync bounds a kept response: a long poll's response to one
// commit is a few KiB, and a larger one (long messages, a client catching
// up) is not worth holding on to.
const maxKeptSync = maxPooledSyncBuf

// sharedSyncs keeps the last few responses kept to share. Long polls of
// one span ask within a few milliseconds of each other, so a handful of
// entries covers the spans and filters in flight.
type sharedSyncs struct {
	mu   sync.Mutex
	ring [8]*sharedSync
	next int
	off  bool // every response built (tests compare the two)
	// fromMemory counts the responses whose user part came from memory
	// (tests check that path ran).
	fromMemory atomic.Int64
	// prepared counts the responses kept before their long polls woke
	// (sync_early.go).
	prepared atomic.Int64
}

func (m *sharedSyncs) find(k sharedKey) *sharedSync {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.off {
		return nil
	}
	return m.kept(k)
}

// kept is the response kept for k, or nil; m.mu must be held.
func (m *sharedSyncs) kept(k sharedKey) *sharedSync {
	for _, s := range m.ring {
		if s != nil && s.key == k {
			return s
		}
	}
	return nil
}

// wanted reports whether a response for k should be kept: sharing is on
// (off, no build asks for its span's shape either, room.SyncRequest.Share,
// and every /sync is built as if there were no sharing at all) and none
// is kept yet.
func (m *sharedSyncs) wanted(k sharedKey) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.off && m.kept(k) == nil
}

// keep keeps s and reports whether it did: not when sharing is off or a
// response for its key is kept already (a build and a preparation of the
// same span: sync_early.go).
func (m *sharedSyncs) keep(s *sharedSync) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.off || m.kept(s.key) != nil {
		return false
	}
	m.ring[m.next] = s
	m.next = (m.next + 1) % len(m.ring)
	return true
}

// sharedKeyOf is the key of a /sync that may be shared, and false for
// one that never is.
func sharedKeyOf(since, now syncToken, f *filter, fullState bool, mode stateMode) (sharedKey, bool) {
	if since.pos == 0 || fullState || since.eph != now.eph {
		return sharedKey{}, false
	}
	return sharedKey{since: since, now: now, filter: f.text, mode: mode}, true
}

// wantShare reports whether a build of this /sync should find out whether
// its response can be kept: it may be shared, and none is kept yet.
func (s *Server) wantShare(since, now syncToken, f *filter, fullState bool, mode stateMode) bool {
	k, ok := sharedKeyOf(since, now, f, fullState, mode)
	return ok && s.shared.wanted(k)
}

// writeBuilt writes a built response, keeping it to share when its build
// found the span and user qualify (resp.shape) and it is what the shape
// says every such user gets: its one room's section and nothing else.
func (s *Server) writeBuilt(w http.ResponseWriter, since, now syncToken, f *filter, mode stateMode, resp *syncResponse) {
	sh := resp.shape
	k, ok := sharedKeyOf(since, now, f, false, mode) // a shape was only asked for without full_state
	if sh == nil || !ok || !keepable(resp, sh.RoomID) {
		writeSync(w, resp)
		return
	}
	cuts := &syncCuts{}
	buf := getSyncBuf()
	defer putSyncBuf(buf)
	if err := encodeSync(syncEncoder{b: buf, cuts: cuts}, resp); err != nil {
		writeSync(w, resp) // reports the error
		return
	}
	b := buf.Bytes()
	if len(b) <= maxKeptSync {
		s.shared.keep(&sharedSync{key: k, f: f, shape: sh,
			head: bytes.Clone(b[:cuts.unreadFrom]), mid: bytes.Clone(b[cuts.unreadTo:cuts.keys])})
	}
	writeSyncBytes(w, b)
}

// keepable reports whether resp holds exactly the shape's room with its
// new events, and none of the sections a span of that shape leaves empty
// for every user.
func keepable(resp *syncResponse, roomID string) bool {
	jr, ok := resp.Rooms.Join[roomID]
	return ok && len(resp.Rooms.Join) == 1 && len(jr.Timeline.Events) > 0 &&
		len(resp.Rooms.Invite) == 0 && len(resp.Rooms.Leave) == 0 && len(resp.Rooms.Knock) == 0 &&
		len(resp.Presence.Events) == 0 && len(resp.AccountData.Events) == 0 && len(resp.ToDevice.Events) == 0
}

// writeShared writes c's response from a kept one, if there is one for
// this /sync and c's user qualifies, and reports whether it did. The
// to-device messages the token acknowledged are deleted as a build
// deletes them.
func (s *Server) writeShared(w http.ResponseWriter, c *caller, since, now syncToken, f *filter, fullState bool, mode stateMode) (bool, error) {
	k, ok := sharedKeyOf(since, now, f, fullState, mode)
	if !ok {
		return false, nil
	}
	sh := s.shared.find(k)
	if sh == nil {
		return false, nil
	}
	kinds, err := s.spanKinds(since.pos, now.pos)
	if err != nil {
		return false, err
	}
	var live *push.Live
	if s.push != nil {
		if live, err = s.push.Live(context.Background(), c.UserID, now.pos); err != nil {
			return false, err
		}
	}
	part, ok := s.userPartFromMemory(c, since, now, kinds, sh.shape, live)
	if ok {
		s.shared.fromMemory.Add(1)
	} else if part, ok, err = s.userPartFromStore(c, since, now, kinds, sh.shape, live); !ok || err != nil {
		return false, err
	}
	if s.keys != nil {
		s.drained.mark(c, now.pos)
	}
	counts, threads := s.zeroUnread(), map[string]map[string]int(nil)
	if s.push != nil {
		counts, threads = roomUnread(part.counts, f.threaded())
	}
	buf := getSyncBuf()
	defer putSyncBuf(buf)
	e := syncEncoder{b: buf}
	buf.Write(sh.head)
	if err := e.unread(counts, threads); err != nil {
		return false, err
	}
	buf.Write(sh.mid)
	if err := e.keyCounts(part.otk, part.fallback); err != nil {
		return false, err
	}
	writeSyncBytes(w, buf.Bytes())
	return true, nil
}

// userPart is what a response shared with c holds of c's own: its unread
// counts in the shape's room and its device's key counts.
type userPart struct {
	counts   push.Counts
	otk      map[string]int
	fallback []string
}

// userPartFromMemory is c's part of a kept response, and whether c
// qualifies, from what earlier /syncs read, without a transaction: each of
// the memos says when what it kept still holds (room.Engine.SharedFromMemory,
// e2ee.Service.CachedCounts, push.Service.CountsMem, the ignored list's
// cache). It reports false when any does not know, and userPartFromStore
// must read.
func (s *Server) userPartFromMemory(c *caller, since, now syncToken, kinds room.ChangeKinds, sh *room.SpanShape, live *push.Live) (userPart, bool) {
	ignored, ok := s.ignored.cached(c.Localpart, since.pos, now.pos, kinds)
	if !ok || !s.rooms.SharedFromMemory(c.UserID, since.pos, now.pos, sh, ignored) {
		return userPart{}, false
	}
	p := userPart{otk: map[string]int{}, fallback: []string{}}
	if s.keys != nil {
		// A shape's span holds no to-device message (each takes a
		// position of its own): with none queued up to since, there is
		// none to send and none to acknowledge.
		if !s.drained.upTo(c, since.pos) {
			return userPart{}, false
		}
		if p.otk, p.fallback, ok = s.keys.CachedCounts(c.UserID, c.DeviceID); !ok {
			return userPart{}, false
		}
	}
	if s.push != nil {
		if p.counts, ok = s.push.CountsMem(c.UserID, sh.RoomID, since.pos, now.pos, live); !ok {
			return userPart{}, false
		}
	}
	return p, true
}

// userPartFromStore is userPartFromMemory read in one transaction
// (room.Engine.SyncShared), which also fills the memos for the next span.
func (s *Server) userPartFromStore(c *caller, since, now syncToken, kinds room.ChangeKinds, sh *room.SpanShape, live *push.Live) (userPart, bool, error) {
	reads := &syncReads{live: live}
	req := room.SyncRequest{UserID: c.UserID, Device: c.Session, Since: since.pos, Now: now.pos,
		SinceEph: since.eph, NowEph: now.eph, IgnoredIn: s.ignored.in(c.Localpart, since.pos, now.pos, kinds),
		Also: s.readIn(c, since, now, reads)}
	if ok, err := s.rooms.SyncShared(req, sh); err != nil || !ok {
		return userPart{}, false, err
	}
	if reads.toDeviceNews {
		return userPart{}, false, nil // not for this shape: its span holds no to-device message
	}
	if err := s.ackToDevice(c, since, reads); err != nil {
		return userPart{}, false, err
	}
	p := userPart{otk: map[string]int{}, fallback: []string{}}
	if s.keys != nil {
		p.otk, p.fallback = reads.otk, reads.fallback
	}
	if s.push != nil {
		n, err := s.unreadCounts(c, sh.RoomID, reads)
		if err != nil {
			return userPart{}, false, err
		}
		p.counts = n
	}
	return p, true, nil
}
