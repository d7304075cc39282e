package room

import (
	"encoding/json"
	"errors"
	"slices"
	"sort"

	"github.com/hearth-chat/hearth/internal/store"
)

// SyncRequest asks for the room part of a /sync between two stream
// positions (Client-Server API §"Syncing").
type SyncRequest struct {
	// Device is the client session syncing (account.Token.TxnScope),
	// which alone sees unsigned.transaction_id on the events it sent.
	UserID, Device   string
	Since, Now       uint64 // stream positions; Since 0 is an initial sync
	SinceEph, NowEph uint64 // typing counters
	FullState        bool
	IncludeLeave     bool
	Timeline         EventFilter // Limit is the timeline limit
	State            EventFilter
	// Ephemeral filters typing and receipts; a negative Limit turns them off.
	Ephemeral       EventFilter
	LazyLoadMembers bool
	Rooms, NotRooms []string
	// Ignored are the users in the user's m.ignored_user_list: their
	// invites and their timeline events other than state are not shown
	// (Client-Server API §"Ignoring Users").
	Ignored map[string]bool
	// IgnoredIn, when Ignored is nil, reads Ignored inside the sync's own
	// transaction (one read transaction fewer per /sync).
	IgnoredIn func(tx *store.Tx) map[string]bool
	// HideInvite, when set, says whether an invite from sender stays out
	// of rooms.invite: MSC4155 invite filtering ("ignore", and "block"
	// for invites stored before the rule), read by the HTTP layer.
	HideInvite func(sender string) bool
	// HideInviteIn is HideInvite read inside the sync's own transaction,
	// only when an invite is there to judge (most syncs have none, and a
	// nested read transaction could deadlock against bbolt's remap). It
	// is asked when HideInvite is nil.
	HideInviteIn func(tx *store.Tx, sender string) bool
	// StateAfter asks for a room's state at the end of its timeline
	// rather than at its start (MSC4222, spec v1.16 use_state_after).
	StateAfter bool
	// Kinds, when read (Engine.SpanChangeKinds of Since, Now), lets an
	// incremental sync skip reading the change log for receipts and state
	// moves when the span holds neither.
	Kinds ChangeKinds
	// Also, when set, is called at the end of the sync's own read
	// transaction with the rooms section just built, so the other
	// sections of the same response (unread counts, to-device messages,
	// key counts) are read from the same snapshot instead of each opening
	// a transaction of its own. It must not open a transaction itself: a
	// nested read transaction can deadlock against bbolt's remap.
	Also func(tx *store.Tx, rooms *SyncRooms) error
	// Share asks whether this user's rooms section is one other users of
	// the span can be given (SyncRooms.Shape, sync_shape.go).
	Share bool
}

// Timeline is a room's timeline section.
type Timeline struct {
	Events    []ClientEvent   `json:"events"`
	Limited   bool            `json:"limited"`
	PrevBatch uint64          `json:"-"`
	nids      map[uint64]bool // the events shown, by NID
	// skippedState is set when a state event of its span is not shown
	// (not visible, ignored sender's or filtered out): then the state at
	// its end may hold an event the client would otherwise never see.
	skippedState bool
}

// JoinedRoom is one entry of rooms.join.
type JoinedRoom struct {
	Timeline Timeline
	// State is the state section: at the start of the timeline, or at
	// its end when SyncRequest.StateAfter asked for state_after.
	State     []ClientEvent
	Ephemeral []json.RawMessage
	Summary   map[string]any
	// NewMembers are the users who share this room with the syncing user
	// now but did not at the token (incremental syncs only): every other
	// joined member of a room joined since, else those whose joins are
	// in the timeline. /sync sends their presence.
	NewMembers []string
	// LazyMembers are the event IDs of the member events State holds only
	// because lazy loading gives the client each timeline sender's
	// membership (lazyMembers). They are not changes of the span: a
	// change is in the timeline too, where device_lists finds it.
	LazyMembers []string
}

// InvitedRoom is one entry of rooms.invite.
type InvitedRoom struct {
	InviteState []json.RawMessage
}

// LeftRoom is one entry of rooms.leave.
type LeftRoom struct {
	Timeline Timeline
	State    []ClientEvent // as JoinedRoom.State
}

// SyncRooms is the rooms section of a /sync.
type SyncRooms struct {
	Join   map[string]*JoinedRoom
	Invite map[string]*InvitedRoom
	Leave  map[string]*LeftRoom
	Knock  map[string]*InvitedRoom // knock_state has invite_state's shape
	// Active are the wanted rooms the user is joined to whose timeline
	// may have moved after the token, shown or not (a filter may hide
	// every new event): a superset of the rooms that can hold news for
	// the user's unread counts on an incremental sync
	// (push.RoomsNotifiedIn's among).
	Active []string
	// Shape, when SyncRequest.Share asked and the span and user qualify,
	// is the span's shape: every user SyncShared accepts for it has this
	// rooms section (sync_shape.go).
	Shape *SpanShape
}

// Sync assembles the rooms section for the positions in req, reading one
// consistent snapshot of the store; events past req.Now are ignored even if
// they were committed meanwhile, so the next_batch token stays exact.
func (e *Engine) Sync(req SyncRequest) (*SyncRooms, error) {
	// Active is never nil: push.RoomsNotifiedIn reads every room for nil.
	out := &SyncRooms{Join: map[string]*JoinedRoom{}, Invite: map[string]*InvitedRoom{}, Leave: map[string]*LeftRoom{},
		Knock: map[string]*InvitedRoom{}, Active: []string{}}
	var memberOf []string // room IDs for memberOf.note (sync_wake_mem.go)
	shaped := false       // the rooms were not all read: keep the last note
	err := e.db.View(func(tx *store.Tx) error {
		if req.Ignored == nil && req.IgnoredIn != nil {
			req.Ignored = req.IgnoredIn(tx)
		}
		if req.Share {
			var err error
			if shaped, err = e.syncShaped(tx, req, out); err != nil || shaped {
				if err != nil || req.Also == nil {
					return err
				}
				return req.Also(tx, out)
			}
		}
		changes, err := roomChangesSince(tx, req)
		if err != nil {
			return err
		}
		head := roomHeadsOf(tx)
		for _, m := range memberships(tx, req.UserID) {
			if m.Forgotten || m.Pos > req.Now {
				continue
			}
			roomID, lastPos, err := head(m.RoomNID)
			if err != nil {
				return err
			}
			memberOf = append(memberOf, roomID)
			if !roomWanted(req, roomID) {
				continue
			}
			if m.Membership == "join" && lastPos > req.Since {
				out.Active = append(out.Active, roomID)
			}
			if e.quietJoined(req, m, roomID, lastPos, changes) {
				continue
			}
			info, err := roomInfoByNID(tx, m.RoomNID)
			if err != nil {
				return err
			}
			switch m.Membership {
			case "join":
				jr, err := e.syncJoined(tx, req, info, m, changes.receipts[info.ID], changes.stateMoved[info.ID])
				if err != nil {
					return err
				}
				if jr != nil {
					out.Join[info.ID] = jr
				}
			case "invite", "knock":
				if req.Since == 0 || m.Pos > req.Since {
					ir, err := e.syncInvite(tx, req, info, m.Membership)
					if err != nil {
						return err
					}
					if ir == nil {
						continue // an invite from an ignored user
					}
					if m.Membership == "knock" {
						out.Knock[info.ID] = ir
					} else {
						out.Invite[info.ID] = ir
					}
				}
			case "leave", "ban":
				if (req.Since == 0 && req.IncludeLeave) || (req.Since != 0 && m.Pos > req.Since) {
					lr, err := e.syncLeft(tx, req, info, m)
					if err != nil {
						return err
					}
					out.Leave[info.ID] = lr
				}
			}
		}
		if req.Also != nil {
			return req.Also(tx, out)
		}
		return nil
	})
	if err == nil && !shaped {
		e.memberOf.note(req.UserID, memberOf)
	}
	return out, err
}

// quietJoined reports whether a room the user was already joined to at
// the token has nothing for an incremental sync: no timeline event after
// the token (the record's LastPos is the room's newest position;
// backfilled history goes below it), no receipt, no state move and no
// typing change. syncJoined would find exactly that and return nil; a
// user in hundreds of rooms, woken by a message in one, skips the others'
// record decoding, timeline seeks and visibility logs.
func (e *Engine) quietJoined(req SyncRequest, m Membership, roomID string, lastPos uint64, changes roomChanges) bool {
	if m.Membership != "join" || req.Since == 0 || m.Pos > req.Since || req.FullState ||
		lastPos > req.Since || changes.receipts[roomID] != nil || changes.stateMoved[roomID] {
		return false
	}
	_, typing := e.typingSince(roomID, req.SinceEph, false)
	return !typing
}

func roomWanted(req SyncRequest, roomID string) bool {
	if len(req.Rooms) > 0 && !slices.Contains(req.Rooms, roomID) {
		return false
	}
	return !slices.Contains(req.NotRooms, roomID)
}

func (e *Engine) syncJoined(tx *store.Tx, req SyncRequest, info *Info, m Membership, receiptUsers map[string]bool, stateMoved bool) (*JoinedRoom, error) {
	from := req.Since
	if req.Since == 0 || m.Pos > req.Since {
		// A room joined since the token is new to the client: its
		// timeline is the room's latest events as in an initial sync,
		// not only those after the token.
		from = 0
	}
	tl, err := e.syncTimeline(tx, req, info, from, req.Now)
	if err != nil {
		return nil, err
	}
	return e.joinedWith(tx, req, info, m, tl, receiptUsers, stateMoved)
}

// joinedWith is syncJoined given the room's timeline section: the rest of
// the room's entry, or nil when an incremental sync has nothing for it.
func (e *Engine) joinedWith(tx *store.Tx, req SyncRequest, info *Info, m Membership, tl Timeline, receiptUsers map[string]bool, stateMoved bool) (*JoinedRoom, error) {
	initial := req.Since == 0 || m.Pos > req.Since || req.FullState
	jr := &JoinedRoom{Timeline: tl}
	var err error

	// Ephemeral: typing and receipts.
	if req.Ephemeral.Limit >= 0 {
		if users, changed := e.typingSince(info.ID, req.SinceEph, req.Since == 0); changed && req.Ephemeral.Allows("m.typing", "") &&
			(req.Since == 0 || req.SinceEph < req.NowEph) {
			if users == nil {
				users = []string{}
			}
			b, _ := json.Marshal(map[string]any{"type": "m.typing", "content": map[string]any{"user_ids": users}})
			jr.Ephemeral = append(jr.Ephemeral, b)
		}
		if (req.Since == 0 || receiptUsers != nil) && req.Ephemeral.Allows("m.receipt", "") {
			var who map[string]bool
			if req.Since != 0 {
				who = receiptUsers
			}
			if rc := receiptContent(tx, info.NID, req.UserID, who); len(rc) > 0 {
				b, _ := json.Marshal(map[string]any{"type": "m.receipt", "content": rc})
				jr.Ephemeral = append(jr.Ephemeral, b)
			}
		}
	}

	if l := req.Ephemeral.Limit; l > 0 && len(jr.Ephemeral) > l {
		jr.Ephemeral = jr.Ephemeral[:l]
	}
	// State: the state at the start of the timeline (syncState), or at
	// its end (syncStateAfter).
	var state map[string]uint64
	if req.StateAfter {
		state, err = e.syncStateAfter(tx, req, info, tl, initial, stateMoved)
	} else {
		state, err = e.syncState(tx, req, info, tl, initial, stateMoved)
	}
	if err != nil {
		return nil, err
	}
	var senders map[string]bool // lazy loading's members to keep
	if req.LazyLoadMembers && len(state) > 0 {
		senders = map[string]bool{req.UserID: true}
		for _, ev := range tl.Events {
			senders[ev.Sender] = true
		}
	}
	for _, nid := range state {
		ev, err := e.loadEvent(tx, nid)
		if err != nil {
			return nil, err
		}
		if req.LazyLoadMembers && ev.PDU.Type() == "m.room.member" && !senders[*ev.PDU.StateKey()] {
			continue
		}
		if !req.State.matches(ev) {
			continue
		}
		jr.State = append(jr.State, e.clientEvent(tx, ev, ClientView{Viewer: req.UserID, OmitRoomID: true}))
	}
	if !initial && len(tl.Events) == 0 && len(jr.Ephemeral) == 0 && len(jr.State) == 0 {
		return nil, nil
	}
	if req.LazyLoadMembers && !initial {
		if err := e.lazyMembers(tx, req, info, jr); err != nil {
			return nil, err
		}
	}
	sort.SliceStable(jr.State, func(i, j int) bool {
		if jr.State[i].Type != jr.State[j].Type {
			return jr.State[i].Type < jr.State[j].Type
		}
		return *jr.State[i].StateKey < *jr.State[j].StateKey
	})
	if initial || hasMemberEvent(tl.Events) {
		jr.Summary = e.summary(tx, info, req.UserID)
	}
	if req.Since != 0 {
		if jr.NewMembers, err = e.newMembers(tx, req, info, m, tl); err != nil {
			return nil, err
		}
	}
	return jr, nil
}

// lazyMembers adds, on an incremental lazy-loading sync, the member event
// of every timeline sender whose membership the timeline and state do not
// already carry: the client may never have seen it (Client-Server API
// §"Lazy-loading room members"). Hearth does not track which members each
// device was sent, so these may be redundant, which the spec allows. With
// state_after the timeline's member events do not count: a client takes
// state from state_after alone (MSC4222).
func (e *Engine) lazyMembers(tx *store.Tx, req SyncRequest, info *Info, jr *JoinedRoom) error {
	have := map[string]bool{}
	lists := [][]ClientEvent{jr.State}
	if !req.StateAfter {
		lists = append(lists, jr.Timeline.Events)
	}
	for _, l := range lists {
		for _, ev := range l {
			if ev.Type == "m.room.member" && ev.StateKey != nil {
				have[*ev.StateKey] = true
			}
		}
	}
	for _, tev := range jr.Timeline.Events {
		if have[tev.Sender] {
			continue
		}
		have[tev.Sender] = true
		ev, err := e.currentStateEvent(tx, info.NID, "m.room.member", tev.Sender)
		if err != nil {
			return err
		}
		if ev != nil && ev.NID <= req.Now {
			jr.State = append(jr.State, e.clientEvent(tx, ev, ClientView{Viewer: req.UserID, OmitRoomID: true}))
			jr.LazyMembers = append(jr.LazyMembers, ev.ID)
		}
	}
	return nil
}

func hasMemberEvent(evs []ClientEvent) bool {
	for _, ev := range evs {
		if ev.Type == "m.room.member" {
			return true
		}
	}
	return false
}

// syncTimeline returns the newest events with from < pos ≤ to, at most the
// filter's limit, oldest first. It is limited when the limit cut it short,
// and also when it reaches back to the room's first event here and that is
// not the room's creation: a room joined through another server, whose
// earlier history the client can page back into (/messages backfills it).
func (e *Engine) syncTimeline(tx *store.Tx, req SyncRequest, info *Info, from, to uint64) (Timeline, error) {
	limit := req.Timeline.Limit
	if limit <= 0 {
		limit = 10
	}
	tl := Timeline{Events: []ClientEvent{}, PrevBatch: to, nids: map[uint64]bool{}}
	var poss, nids []uint64
	reachedFirst := true
	err := scanTimeline(tx, info.NID, to, Backward, func(pos, nid uint64) (bool, error) {
		if pos <= from {
			reachedFirst = false
			return false, nil
		}
		if len(nids) >= limit {
			tl.Limited = true
			return false, nil
		}
		poss, nids = append(poss, pos), append(nids, nid)
		return true, nil
	})
	if err != nil {
		return tl, err
	}
	view := ClientView{Viewer: req.UserID, ViewerDevice: req.Device, OmitRoomID: true, NowMs: nowMs()}
	h := e.history(tx, req.UserID, info.NID)
	if reachedFirst && !tl.Limited && len(nids) > 0 {
		first, err := e.loadEvent(tx, nids[len(nids)-1])
		if err != nil {
			return tl, err
		}
		tl.Limited = first.PDU.Type() != "m.room.create" && len(first.PDU.PrevEventIDs()) > 0
	}
	for i := len(nids) - 1; i >= 0; i-- {
		ev, err := e.loadEvent(tx, nids[i])
		if err != nil {
			return tl, err
		}
		if !h.canSee(poss[i]) {
			tl.skippedState = tl.skippedState || ev.PDU.StateKey() != nil
			continue
		}
		// Client-Server API §"Ignoring Users": an ignored user's events
		// stay out, but for state events, which the room's state needs.
		ignored := ev.PDU.StateKey() == nil && req.Ignored[string(ev.PDU.SenderID())]
		if ev.Flags&flagRejected != 0 || ignored || !req.Timeline.matches(ev) {
			tl.skippedState = tl.skippedState || (ev.Flags&flagRejected == 0 && ev.PDU.StateKey() != nil)
			continue
		}
		tl.Events = append(tl.Events, e.clientEvent(tx, ev, view))
		tl.nids[ev.NID] = true
	}
	if len(nids) > 0 {
		tl.PrevBatch = poss[len(poss)-1] - 1
	}
	return tl, nil
}

// summary is the room summary of a joined room (m.heroes and counts).
// Heroes are the first five other joined or invited members in state order.
func (e *Engine) summary(tx *store.Tx, info *Info, viewer string) map[string]any {
	heroes := []string{}
	errEnough := errors.New("enough heroes")
	eachCurrentState(tx, info.NID, "m.room.member\x00", func(_, sk string, nid uint64) error {
		if sk == viewer {
			return nil
		}
		ev, err := e.loadEvent(tx, nid)
		if err != nil {
			return nil
		}
		if m, _ := ev.PDU.Membership(); m == "join" || m == "invite" {
			heroes = append(heroes, sk)
		}
		if len(heroes) == 5 {
			return errEnough
		}
		return nil
	})
	return map[string]any{"m.heroes": heroes, "m.joined_member_count": info.Joined, "m.invited_member_count": info.Invited}
}
