package matrix

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

// maxSyncTimeout caps the long poll so proxies and clients do not give up
// on a silent connection.
const maxSyncTimeout = 5 * time.Minute

type syncResponse struct {
	NextBatch   string         `json:"next_batch"`
	Rooms       syncRooms      `json:"rooms"`
	Presence    eventList      `json:"presence"`
	AccountData eventList      `json:"account_data"`
	ToDevice    eventList      `json:"to_device"`
	DeviceLists map[string]any `json:"device_lists"`
	OTKCounts   map[string]int `json:"device_one_time_keys_count"`
	// FallbackKeyTypes is device_unused_fallback_key_types.
	FallbackKeyTypes []string `json:"device_unused_fallback_key_types"`
	// shape is set when other users' responses to the same /sync can be
	// made from this one (sync_shared.go).
	shape *room.SpanShape
}

type eventList struct {
	Events []json.RawMessage `json:"events"`
}

type syncRooms struct {
	Join   map[string]joinedRoom  `json:"join"`
	Invite map[string]invitedRoom `json:"invite"`
	Leave  map[string]leftRoom    `json:"leave"`
	Knock  map[string]any         `json:"knock"`
}

type timeline struct {
	Events    []any  `json:"events"`
	Limited   bool   `json:"limited"`
	PrevBatch string `json:"prev_batch,omitempty"`
}

type stateList struct {
	Events []any `json:"events"`
}

// roomState is a room's state section under the name the request asked
// for: state (the state at the start of the timeline), or with
// use_state_after state_after, or with the unstable
// org.matrix.msc4222.use_state_after the unstable name (MSC4222, spec
// v1.16). Exactly the asked-for ones are present, even when empty.
type roomState struct {
	State              *stateList `json:"state,omitempty"`
	StateAfter         *stateList `json:"state_after,omitempty"`
	StateAfterUnstable *stateList `json:"org.matrix.msc4222.state_after,omitempty"`
}

// stateEvents is the events of whichever section is present.
func (rs roomState) stateEvents() []any {
	for _, l := range []*stateList{rs.State, rs.StateAfter, rs.StateAfterUnstable} {
		if l != nil {
			return l.Events
		}
	}
	return nil
}

// stateMode is which of roomState's sections a /sync asked for.
type stateMode struct{ after, afterUnstable bool }

func (m stateMode) any() bool { return m.after || m.afterUnstable }

func (m stateMode) section(evs []any) roomState {
	l := &stateList{Events: evs}
	if !m.any() {
		return roomState{State: l}
	}
	var rs roomState
	if m.after {
		rs.StateAfter = l
	}
	if m.afterUnstable {
		rs.StateAfterUnstable = l
	}
	return rs
}

type joinedRoom struct {
	Timeline timeline `json:"timeline"`
	roomState
	AccountData               eventList                 `json:"account_data"`
	Ephemeral                 eventList                 `json:"ephemeral"`
	Summary                   map[string]any            `json:"summary"`
	UnreadNotifications       map[string]int            `json:"unread_notifications"`
	UnreadThreadNotifications map[string]map[string]int `json:"unread_thread_notifications,omitempty"`
}

type invitedRoom struct {
	InviteState eventList `json:"invite_state"`
}

type leftRoom struct {
	Timeline timeline `json:"timeline"`
	roomState
	AccountData eventList `json:"account_data"`
}

// sync implements GET /sync (Client-Server API §"Syncing"): an initial
// sync without since, else the changes after since, waiting up to timeout
// for something to happen. The wait is a channel receive, not a poll.
func (s *Server) sync(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := parseSyncParams(r.URL.RawQuery)
	var since syncToken
	if v := q[qSince]; v != "" {
		t, err := parseSyncToken(v)
		if err != nil {
			return err
		}
		since = t
	}
	timeout := time.Duration(0)
	if v := q[qTimeout]; v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 {
			return matrixerr.InvalidParam("timeout must be a non-negative integer")
		}
		timeout = min(time.Duration(ms)*time.Millisecond, maxSyncTimeout)
	}
	f, err := s.syncFilter(c, q[qFilter])
	if err != nil {
		return err
	}
	if p := q[qSetPresence]; p != "" {
		if p != "online" && p != "offline" && p != "unavailable" {
			return matrixerr.InvalidParam("set_presence must be online, offline or unavailable")
		}
		defer s.presence.touch(r.Context(), c, p)()
	} else {
		defer s.presence.touch(r.Context(), c, "online")()
	}
	fullState := q[qFullState] == "true"
	mode := stateMode{after: q[qStateAfter] == "true", afterUnstable: q[qStateAfterUnstable] == "true"}
	pos, eph := s.rooms.Pos()
	if since.pos > pos {
		return matrixerr.InvalidParam("since token is from the future")
	}
	if since.eph > eph {
		// The typing counter restarted with the daemon: resend typing state.
		since.eph = 0
	}
	var poll longPoll
	if timeout > 0 {
		poll = s.polls.start(r.Context(), timeout)
		defer poll.stop()
	}
	if s.caughtUp(c, since, pos, eph, fullState, timeout) && s.awaitNews(poll, c, pos, eph) == nil {
		pos, eph = s.rooms.Pos()
		if s.push != nil {
			s.push.AwaitCounts(r.Context(), pos)
		}
	}
	for {
		now := syncToken{pos, eph}
		if done, err := s.writeShared(w, c, since, now, f, fullState, mode); done || err != nil {
			return err
		}
		resp, empty, err := s.buildSync(c, since, now, f, fullState, mode)
		if err != nil {
			return err
		}
		if s.keys != nil && len(resp.ToDevice.Events) == 0 {
			// The build acknowledged what since did and found nothing
			// after it: nothing is queued up to pos (caughtUp).
			s.drained.mark(c, pos)
		}
		if !empty || since.pos == 0 || fullState || timeout == 0 {
			s.writeBuilt(w, since, now, f, mode, resp)
			return nil
		}
		if err := s.awaitNews(poll, c, pos, eph); err != nil {
			// Timed out, or the daemon is stopping: an empty response that
			// keeps the client's place. If the client went away instead,
			// the write fails harmlessly.
			writeSync(w, resp)
			return nil
		}
		pos, eph = s.rooms.Pos()
		if s.push != nil {
			// Let the push evaluator publish the new events' counts before
			// this /sync (one of many woken at once) takes the CPU to build
			// a response that would then wait for them anyway.
			s.push.AwaitCounts(r.Context(), pos)
		}
	}
}

func (s *Server) buildSync(c *caller, since, now syncToken, f *filter, fullState bool, mode stateMode) (*syncResponse, bool, error) {
	if syncWatch != nil {
		syncWatch(c.UserID, now.pos, true)
	}
	req := room.SyncRequest{UserID: c.UserID, Device: c.Session, Since: since.pos, Now: now.pos,
		SinceEph: since.eph, NowEph: now.eph, FullState: fullState,
		StateAfter: mode.any(), HideInviteIn: inviteHiderIn(c.Localpart),
		Share: s.wantShare(since, now, f, fullState, mode)}
	kinds, err := s.spanKinds(since.pos, now.pos)
	if err != nil {
		return nil, false, err
	}
	req.Kinds = kinds
	req.IgnoredIn = s.ignored.in(c.Localpart, since.pos, now.pos, kinds)
	roomData := f.roomRequest(&req)
	reads := &syncReads{noReceipts: since.pos != 0 && !kinds.Has(room.ChangeReceipt)}
	if s.push != nil {
		if reads.live, err = s.push.Live(context.Background(), c.UserID, now.pos); err != nil {
			return nil, false, err
		}
	}
	req.Also = s.readIn(c, since, now, reads)
	rooms, err := s.rooms.Sync(req)
	if err != nil {
		return nil, false, err
	}
	if err := s.ackToDevice(c, since, reads); err != nil {
		return nil, false, err
	}
	resp := &syncResponse{NextBatch: now.String(), shape: rooms.Shape,
		Rooms: syncRooms{Join: map[string]joinedRoom{}, Invite: map[string]invitedRoom{},
			Leave: map[string]leftRoom{}, Knock: map[string]any{}},
		ToDevice:    eventList{Events: []json.RawMessage{}},
		DeviceLists: map[string]any{"changed": []string{}, "left": []string{}}, OTKCounts: map[string]int{},
		FallbackKeyTypes: []string{}}
	global, perRoom, err := s.accountDataSince(c, since.pos, now.pos, kinds)
	if err != nil {
		return nil, false, err
	}
	resp.AccountData.Events = f.AccountData.applyRaw(global)
	pres, err := s.presenceSince(c, since.pos, now.pos, kinds)
	if err != nil {
		return nil, false, err
	}
	if since.pos != 0 {
		pres = s.presence.newlySharedPresence(rooms, pres)
	}
	resp.Presence.Events = f.Presence.applyRaw(pres)
	empty := len(resp.AccountData.Events) == 0 && len(resp.Presence.Events) == 0

	for id, jr := range rooms.Join {
		resp.Rooms.Join[id] = s.joinedEntry(f, mode, roomData, jr, perRoom[id])
		delete(perRoom, id)
		empty = false
	}
	for id, evs := range perRoom {
		// Room account data changed in a room with no other news.
		if evs = roomData.applyRaw(evs); len(evs) > 0 && s.isJoined(c, id) {
			resp.Rooms.Join[id] = joinedRoom{Timeline: timeline{Events: []any{}},
				roomState: mode.section([]any{}), AccountData: eventList{Events: evs},
				Ephemeral: eventList{Events: []json.RawMessage{}}, Summary: map[string]any{},
				UnreadNotifications: s.zeroUnread()}
			empty = false
		}
	}
	for id, ir := range rooms.Invite {
		resp.Rooms.Invite[id] = invitedRoom{InviteState: eventList{Events: nonNilRaw(ir.InviteState)}}
		empty = false
	}
	for id, kr := range rooms.Knock {
		resp.Rooms.Knock[id] = map[string]any{"knock_state": eventList{Events: nonNilRaw(kr.InviteState)}}
		empty = false
	}
	// Before syncE2EE: the rooms left are where device_lists.left comes from.
	for id, lr := range rooms.Leave {
		resp.Rooms.Leave[id] = leftRoom{Timeline: f.timeline(lr.Timeline),
			roomState: mode.section(f.events(lr.State)), AccountData: eventList{Events: []json.RawMessage{}}}
		empty = false
	}
	if news, err := s.syncE2EE(c, since, now, resp, reads, rooms); err != nil {
		return nil, false, err
	} else if news {
		empty = false
	}
	if news, err := s.syncUnread(c, since, now, f, resp, reads); err != nil {
		return nil, false, err
	} else if news {
		empty = false
	}
	for id, jr := range resp.Rooms.Join {
		if jr.roomState == (roomState{}) { // a room syncUnread added for its counts
			jr.roomState = mode.section([]any{})
			resp.Rooms.Join[id] = jr
		}
	}
	return resp, empty, nil
}

// roomRequest sets req's room filters from f's, and returns its filter of
// rooms' account data.
func (f *filter) roomRequest(req *room.SyncRequest) *roomEventFilter {
	if f.Room == nil {
		return nil
	}
	req.Rooms, req.NotRooms, req.IncludeLeave = f.Room.Rooms, f.Room.NotRooms, f.Room.IncludeLeave
	req.Timeline = f.Room.Timeline.engine()
	req.State = f.Room.State.engine()
	req.LazyLoadMembers = f.Room.State != nil && f.Room.State.LazyLoadMembers
	req.Ephemeral = f.Room.Ephemeral.engine()
	if f.Room.Ephemeral != nil && f.Room.Ephemeral.Limit != nil && *f.Room.Ephemeral.Limit == 0 {
		req.Ephemeral.Limit = -1
	}
	return f.Room.AccountData
}

// joinedEntry is a joined room's entry in rooms.join, with the room's
// account data; its unread counts are syncUnread's to fill.
func (s *Server) joinedEntry(f *filter, mode stateMode, roomData *roomEventFilter, jr *room.JoinedRoom, accountData []json.RawMessage) joinedRoom {
	return joinedRoom{
		Timeline:            f.timeline(jr.Timeline),
		roomState:           mode.section(f.events(jr.State)),
		AccountData:         eventList{Events: roomData.applyRaw(nonNilRaw(accountData))},
		Ephemeral:           eventList{Events: nonNilRaw(jr.Ephemeral)},
		Summary:             nonNilMap(jr.Summary),
		UnreadNotifications: s.zeroUnread(),
	}
}

// zeroUnread is a joined room's unread_notifications before syncUnread
// fills them: zero without push, and nil with it, since syncUnread then
// sets every joined room's counts (a map per room less per response).
func (s *Server) zeroUnread() map[string]int {
	if s.push != nil {
		return nil
	}
	return map[string]int{"highlight_count": 0, "notification_count": 0}
}

// timeline shapes a room timeline for the response.
func (f *filter) timeline(tl room.Timeline) timeline {
	return timeline{Events: f.events(tl.Events), Limited: tl.Limited, PrevBatch: pageToken(tl.PrevBatch)}
}

// events applies event_fields to events, and never returns nil.
func (f *filter) events(evs []room.ClientEvent) []any {
	out := make([]any, len(evs))
	for i, ev := range evs {
		out[i] = project(ev, f.EventFields)
	}
	return out
}

func nonNilMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

func (s *Server) isJoined(c *caller, roomID string) bool {
	ids, _ := s.rooms.JoinedRooms(c.UserID)
	for _, id := range ids {
		if id == roomID {
			return true
		}
	}
	return false
}

func nonNilRaw(evs []json.RawMessage) []json.RawMessage {
	if evs == nil {
		return []json.RawMessage{}
	}
	return evs
}
