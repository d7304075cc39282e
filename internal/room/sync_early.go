package room

import (
	"sync/atomic"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/internal/store"
)

// A message wakes every long poll of its room, and the first of them built
// the response the others share (sync_shape.go) only once the commit was
// durable: about 110 µs of reads and encoding, on a cold core, between a
// poll's wake and the first response, which every other poll and client
// then followed (docs/performance.md, "Delivery: the first response ready
// at the wake"). Nothing but the new event is missing from a snapshot taken
// before the commit, so /sync prepares that response while the fsync runs
// and keeps it once the event is durable at the position it was prepared
// for.

// EarlySync lets /sync prepare, while a message's commit runs, the
// response its room's long polls will be woken for.
type EarlySync interface {
	// Wants reports whether /sync keeps a response of the room to prepare
	// the next one from; without one the engine reads nothing for it (a
	// room nobody long-polls, or whose last span was not a shape).
	Wants(roomID string) bool
	// Prepare is called from a goroutine of its own and may use span only
	// until it returns; it returns the function that keeps what it
	// prepared (nil: nothing prepared), called once the event is durable
	// at span.Since()+1, on the store's writer before anything is woken
	// (store.Tx.AfterCommit) or on the preparing goroutine, whichever
	// comes second. That function must not block.
	Prepare(span *EarlySpan) (keep func())
}

// SetEarlySync installs p (nil removes it).
func (e *Engine) SetEarlySync(p EarlySync) {
	if p == nil {
		e.earlySync.Store(nil)
		return
	}
	e.earlySync.Store(&p)
}

// earlySyncHook is the Engine's field type for SetEarlySync.
type earlySyncHook = atomic.Pointer[EarlySync]

// EarlySpan is the span (Since, Since+1] a message event will make once
// its commit lands at Since+1 with nothing else: a span of shape
// (sync_shape.go), read from a snapshot at Since and the event in memory.
type EarlySpan struct {
	e     *Engine
	tx    *store.Tx // the snapshot; valid while EarlySync runs
	info  *Info
	ev    *Event
	shape *SpanShape
}

// Since is the position the span starts after; the event will be at
// Since()+1.
func (s *EarlySpan) Since() uint64 { return s.ev.NID - 1 }

// Shape is the span's shape: the users SyncShared and SharedFromMemory
// accept for it get the entry Joined builds.
func (s *EarlySpan) Shape() *SpanShape { return s.shape }

// Joined is the room's entry that Sync, asked req over the span by a user
// the shape accepts, will build once the event is committed (nil when
// req's filters leave the room out, as Sync would): the timeline of the
// one event, which such a user sees whatever the room's history
// visibility and ignores nothing of, and what syncJoined adds to it. The
// request's positions are the span's; its user is not consulted.
func (s *EarlySpan) Joined(req SyncRequest) (*JoinedRoom, error) {
	req.Since, req.Now = s.Since(), s.ev.NID
	req.SinceEph, req.NowEph, req.FullState = 0, 0, false
	if !roomWanted(req, s.info.ID) {
		return nil, nil
	}
	// syncTimeline's result for the span: its one event if the filter
	// keeps it, prev_batch before it, and not limited (the room holds
	// events before the span, so the walk stops at since).
	tl := Timeline{Events: []ClientEvent{}, PrevBatch: req.Since, nids: map[uint64]bool{}}
	if req.Timeline.matches(s.ev) {
		view := ClientView{Viewer: req.UserID, ViewerDevice: req.Device, OmitRoomID: true, NowMs: nowMs()}
		tl.Events = append(tl.Events, s.e.clientEvent(s.tx, s.ev, view))
		tl.nids[s.ev.NID] = true
	}
	// The user was joined before the span (the shape accepts no other):
	// the room is not new to them.
	return s.e.joinedWith(s.tx, req, s.info, Membership{Membership: "join"}, tl, nil, false)
}

// earlySpan is one batch's preparation; it meets the commit
// (follow_push_early.go).
type earlySpan struct {
	meeting
	stored *Event // the event committed
	want   *Event // the event prepared for, at the position prepared for
	keep   func() // nil if nothing was prepared
}

// startEarlySync starts preparing the /sync response for a batch of one
// message event built on the room's head, or returns nil. The event's
// position is guessed as the one after the snapshot's; the preparation is
// kept only if the commit put it there, so a write that came between
// costs nothing but the work.
func (e *Engine) startEarlySync(roomID string, joined int, pdus []gomatrixserverlib.PDU) *earlySpan {
	hook := e.earlySync.Load()
	if hook == nil || len(pdus) != 1 || joined < 2 || !(*hook).Wants(roomID) {
		return nil
	}
	pdu := pdus[0]
	if pdu.StateKey() != nil || pdu.Type() == spec.MRoomRedaction {
		return nil
	}
	snap, err := e.db.Snapshot()
	if err != nil {
		return nil
	}
	r := &earlySpan{}
	go func() {
		keep, want := func() (func(), *Event) {
			// Ended before the commit's followers read: a commit that must
			// grow bbolt's mapping waits for every open read.
			defer snap.Done()
			info, err := roomInfo(snap, roomID)
			if err != nil {
				return nil, nil
			}
			ev := &Event{NID: snap.Pos() + 1, RoomNID: info.NID, Version: info.Version, ID: pdu.EventID(),
				JSON: pdu.JSON(), PDU: pdu}
			sender, ok := e.sharedEvent(snap, ev)
			if !ok {
				return nil, nil
			}
			shape := &SpanShape{RoomID: info.ID, roomNID: info.NID, senders: map[string]bool{sender: true}}
			if ok, err := e.sendersShared(snap, shape, ev.NID); err != nil || !ok {
				return nil, nil
			}
			return (*hook).Prepare(&EarlySpan{e: e, tx: snap, info: info, ev: ev, shape: shape}), ev
		}()
		if r.arrive(func() { r.keep, r.want = keep, want }) {
			r.hand()
		}
	}()
	return r
}

// committed tells the preparation which events the commit made durable;
// it keeps what was prepared now, or when the preparation ends. It does
// not wait.
func (r *earlySpan) committed(stored []*Event) {
	if r != nil && len(stored) == 1 && r.arrive(func() { r.stored = stored[0] }) {
		r.hand()
	}
}

// hand keeps the preparation if the event committed is the one prepared,
// at the position prepared for, and stored as it was read (a batch built
// again in the write transaction has other event IDs); it runs once both
// sides have arrived.
func (r *earlySpan) hand() {
	ev, want := r.stored, r.want
	if r.keep != nil && want != nil && ev.ID == want.ID && ev.NID == want.NID && storedAlike(ev) {
		r.keep()
	}
}
