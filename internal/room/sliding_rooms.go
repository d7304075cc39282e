package room

import (
	"encoding/json"
	"errors"
	"sort"

	"github.com/hearth-chat/hearth/internal/store"
)

// The room results of Simplified Sliding Sync (MSC4186 §"Room results"),
// built for the rooms the HTTP layer chose, in one snapshot.

// StatePattern is one entry of a room config's required_state: a state
// event type and state key, either of which may be a wildcard.
type StatePattern struct {
	Type, StateKey  string
	AnyType, AnyKey bool
}

func (p StatePattern) matches(typ, sk string) bool {
	return (p.AnyType || p.Type == typ) && (p.AnyKey || p.StateKey == sk)
}

// RequiredState is the combined required_state of a room's configs.
type RequiredState struct {
	Include, Exclude []StatePattern
	// LazyMembers adds the member events of the timeline's senders and
	// targets (MSC4186 §"Lazy loaded memberships").
	LazyMembers bool
}

func (rs RequiredState) wants(typ, sk string) bool {
	in := false
	for _, p := range rs.Include {
		if p.matches(typ, sk) {
			in = true
			break
		}
	}
	if !in {
		return false
	}
	for _, p := range rs.Exclude {
		if p.matches(typ, sk) {
			return false
		}
	}
	return true
}

// SlidingRoomRequest asks for one room.
type SlidingRoomRequest struct {
	RoomID string
	// Since is the position up to which the connection already sent the
	// room; 0 sends it whole (initial).
	Since         uint64
	TimelineLimit int
	RequiredState RequiredState
	// LivePos: timeline events after it count in num_live (0: none do).
	LivePos uint64
	// Expand sends the latest TimelineLimit events even if some were sent
	// before: the limit grew (MSC4186 §"Changes to timeline_limit").
	Expand bool
	// StateExpanded sends every entry required_state matches, not only
	// those changed since: the config now asks for more than it did when
	// the room was last sent (MSC4186 §"Changes to required_state").
	StateExpanded bool
}

// SlidingBatch asks for several rooms of one user at position Now.
type SlidingBatch struct {
	UserID, Device string
	Now            uint64
	Ignored        map[string]bool
	// HideInviteIn, when set, hides invites as SyncRequest.HideInviteIn.
	HideInviteIn func(tx *store.Tx, sender string) bool
	Rooms        []SlidingRoomRequest
}

// Hero is an entry of a room result's heroes (MSC4186 §"StrippedHero").
type Hero struct {
	UserID      string `json:"user_id"`
	DisplayName string `json:"displayname,omitempty"`
	AvatarURL   string `json:"avatar_url,omitempty"`
}

// SlidingRoom is one room result. Name and Avatar are nil when not sent;
// a non-nil empty string is a removed one (sent as null).
type SlidingRoom struct {
	Membership     string
	Name, Avatar   *string
	Heroes         []Hero
	Timeline       []ClientEvent
	Limited        bool
	PrevBatch      uint64
	NumLive        int
	RequiredState  []ClientEvent
	InviteState    []json.RawMessage
	Joined         int
	Invited        int
	CountsIncluded bool
	// Changed says the room has anything new for an incremental response.
	Changed bool
	// Whole is set when the result is the whole room although the
	// connection sent it before: the user joined since (an invite
	// accepted, a room rejoined), so the client must replace what it had.
	Whole bool
}

// SlidingRooms builds the requested rooms. A room the user has no
// membership in (or forgot) is left out: subscriptions to rooms one cannot
// see are ignored (MSC4186 §"Subscriptions").
func (e *Engine) SlidingRooms(b SlidingBatch) (map[string]*SlidingRoom, error) {
	out := map[string]*SlidingRoom{}
	err := e.db.View(func(tx *store.Tx) error {
		for _, rr := range b.Rooms {
			nid := store.U64(tx.Get(store.Rooms, []byte(rr.RoomID)))
			if nid == 0 {
				continue
			}
			m := membershipIn(tx, b.UserID, nid)
			if m.Membership == "" || m.Forgotten || m.Pos > b.Now {
				continue
			}
			info, err := roomInfoByNID(tx, nid)
			if err != nil {
				return err
			}
			sr, err := e.slidingRoomResult(tx, b, rr, info, m)
			if err != nil {
				return err
			}
			out[rr.RoomID] = sr
		}
		return nil
	})
	return out, err
}

func (e *Engine) slidingRoomResult(tx *store.Tx, b SlidingBatch, rr SlidingRoomRequest, info *Info, m Membership) (*SlidingRoom, error) {
	sr := &SlidingRoom{Membership: m.Membership}
	if m.Membership == "invite" || m.Membership == "knock" {
		// Stripped state only: the user may not read the room yet.
		sr.Changed = rr.Since == 0 || m.Pos > rr.Since
		ir, err := e.syncInvite(tx, SyncRequest{UserID: b.UserID, Ignored: b.Ignored, HideInviteIn: b.HideInviteIn}, info, m.Membership)
		if err != nil {
			return nil, err
		}
		if ir != nil {
			sr.InviteState = ir.InviteState
		}
		if sr.InviteState == nil {
			sr.InviteState = []json.RawMessage{}
		}
		return sr, nil
	}
	to := b.Now
	if m.Membership != "join" {
		to = m.Pos // nothing after the user left
	}
	since := rr.Since
	if since > to {
		since = to
	}
	// A room (re)joined since it was last sent is new: it gets its latest
	// events, as /sync does for a room joined since the token.
	from := since
	if m.Membership == "join" && m.Pos > since {
		from, sr.Whole = 0, since != 0
	}
	req := SyncRequest{UserID: b.UserID, Device: b.Device, Now: to, Ignored: b.Ignored,
		Timeline: EventFilter{Limit: rr.TimelineLimit}}
	tlFrom := from
	if rr.Expand {
		tlFrom = 0
	}
	var tl Timeline
	if rr.TimelineLimit > 0 {
		var err error
		if tl, err = e.syncTimeline(tx, req, info, tlFrom, to); err != nil {
			return nil, err
		}
	} else {
		tl = Timeline{Events: []ClientEvent{}, PrevBatch: to, nids: map[uint64]bool{}}
		// Without events, the room is limited when there are any.
		scanTimeline(tx, info.NID, to, Backward, func(pos, _ uint64) (bool, error) {
			tl.Limited = pos > from
			return false, nil
		})
	}
	sr.Timeline, sr.Limited, sr.PrevBatch = tl.Events, tl.Limited, tl.PrevBatch
	if rr.LivePos > 0 {
		for nid := range tl.nids {
			if nid > rr.LivePos {
				sr.NumLive++
			}
		}
	}
	initial := from == 0
	sr.Changed = initial || to > since || rr.Expand || rr.StateExpanded

	// required_state: the matching state at the end of the timeline that
	// changed since the room was last sent (all of it when initial).
	state, err := e.slidingState(tx, info, rr.RequiredState, to, m.Membership == "join")
	if err != nil {
		return nil, err
	}
	view := ClientView{Viewer: b.UserID, OmitRoomID: true}
	have := map[uint64]bool{}
	memberChanged := false
	for _, nid := range state {
		if !initial && !rr.StateExpanded && nid <= from {
			continue
		}
		ev, err := e.loadEvent(tx, nid)
		if err != nil {
			return nil, err
		}
		have[nid] = true
		sr.RequiredState = append(sr.RequiredState, e.clientEvent(tx, ev, view))
	}
	for _, ev := range tl.Events {
		if ev.Type == "m.room.member" {
			memberChanged = true
		}
	}
	if rr.RequiredState.LazyMembers {
		if err := e.slidingLazyMembers(tx, info, tl, to, view, have, sr); err != nil {
			return nil, err
		}
	}
	sort.SliceStable(sr.RequiredState, func(i, j int) bool {
		a, b := sr.RequiredState[i], sr.RequiredState[j]
		if a.Type != b.Type {
			return a.Type < b.Type
		}
		return *a.StateKey < *b.StateKey
	})

	// name, avatar, heroes and counts: when initial, or when they changed.
	name, nameNID := e.stateString(tx, info.NID, "m.room.name", "name", to)
	avatar, avatarNID := e.stateString(tx, info.NID, "m.room.avatar", "url", to)
	if initial || nameNID > from {
		if nameNID != 0 {
			sr.Name = &name
		}
	}
	if initial || avatarNID > from {
		if avatarNID != 0 {
			sr.Avatar = &avatar
		}
	}
	if initial || memberChanged || nameNID > from {
		// A room the user left shows its members as they were when the
		// user left, as its timeline and required_state do: a kicked or
		// banned user must not learn who joined after.
		members := roomMembers{info: info}
		if m.Membership != "join" {
			if members.at, err = e.stateMapAt(tx, info, to); err != nil {
				return nil, err
			}
		}
		if name == "" {
			sr.Heroes = e.heroes(tx, members, b.UserID)
		}
		sr.Joined, sr.Invited = e.memberCounts(tx, members)
		sr.CountsIncluded = true
	}
	if initial {
		sr.CountsIncluded = true
	}
	return sr, nil
}

// slidingState returns the NIDs of the state at position to that rs asks
// for. For a joined room that is the current state, with entries newer
// than to skipped (the next response carries them: reading the snapshot
// at to would cost a state walk on every send that races a sync);
// otherwise the state when the user left.
func (e *Engine) slidingState(tx *store.Tx, info *Info, rs RequiredState, to uint64, joined bool) ([]uint64, error) {
	var out []uint64
	if len(rs.Include) == 0 {
		return nil, nil
	}
	if !joined {
		all, err := e.stateMapAt(tx, info, to)
		if err != nil {
			return nil, err
		}
		for k, nid := range all {
			typ, sk := splitStateKey(k)
			if rs.wants(typ, sk) {
				out = append(out, nid)
			}
		}
		return out, nil
	}
	seen := map[uint64]bool{}
	add := func(typ, sk string, nid uint64) error {
		if nid != 0 && nid <= to && !seen[nid] && rs.wants(typ, sk) {
			seen[nid] = true
			out = append(out, nid)
		}
		return nil
	}
	for _, p := range rs.Include {
		switch {
		case p.AnyType:
			if err := eachCurrentState(tx, info.NID, "", add); err != nil {
				return nil, err
			}
			return out, nil // every entry was considered
		case p.AnyKey:
			if err := eachCurrentState(tx, info.NID, p.Type+"\x00", add); err != nil {
				return nil, err
			}
		default:
			add(p.Type, p.StateKey, currentStateNID(tx, info.NID, p.Type, p.StateKey))
		}
	}
	return out, nil
}

// slidingLazyMembers adds the member events of the timeline's senders and
// of the targets of its member events (MSC4186 §"Lazy loaded
// memberships"), unless required_state already carries them.
func (e *Engine) slidingLazyMembers(tx *store.Tx, info *Info, tl Timeline, to uint64, view ClientView, have map[uint64]bool, sr *SlidingRoom) error {
	users := map[string]bool{}
	for _, ev := range tl.Events {
		users[ev.Sender] = true
		if ev.Type == "m.room.member" && ev.StateKey != nil {
			users[*ev.StateKey] = true
		}
	}
	ids := make([]string, 0, len(users))
	for u := range users {
		ids = append(ids, u)
	}
	sort.Strings(ids)
	var state map[string]uint64
	if sr.Membership != "join" {
		var err error
		if state, err = e.stateMapAt(tx, info, to); err != nil {
			return err
		}
	}
	for _, u := range ids {
		var nid uint64
		if state != nil {
			nid = state[stateKey("m.room.member", u)]
		} else {
			nid = currentStateNID(tx, info.NID, "m.room.member", u)
		}
		if nid == 0 || nid > to || have[nid] {
			continue
		}
		ev, err := e.loadEvent(tx, nid)
		if err != nil {
			return err
		}
		have[nid] = true
		sr.RequiredState = append(sr.RequiredState, e.clientEvent(tx, ev, view))
	}
	return nil
}

// stateString reads one string field of a current state event's content
// and the event's NID (0 when unset or newer than to).
func (e *Engine) stateString(tx *store.Tx, roomNID uint64, typ, field string, to uint64) (string, uint64) {
	nid := currentStateNID(tx, roomNID, typ, "")
	if nid == 0 || nid > to {
		return "", 0
	}
	ev, err := e.loadEvent(tx, nid)
	if err != nil {
		return "", 0
	}
	var c map[string]any
	json.Unmarshal(ev.PDU.Content(), &c)
	s, _ := c[field].(string)
	return s, nid
}

// roomMembers is the member state heroes and counts are read from: the
// room's current state, or the state map at when it is set (the state at
// the user's leave, from stateMapAt).
type roomMembers struct {
	info *Info
	at   map[string]uint64
}

// each calls fn for every m.room.member entry, in state key order.
func (rm roomMembers) each(tx *store.Tx, fn func(sk string, nid uint64) error) error {
	if rm.at == nil {
		return eachCurrentState(tx, rm.info.NID, "m.room.member\x00", func(_, sk string, nid uint64) error {
			return fn(sk, nid)
		})
	}
	var keys []string
	for k := range rm.at {
		if typ, _ := splitStateKey(k); typ == "m.room.member" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		_, sk := splitStateKey(k)
		if err := fn(sk, rm.at[k]); err != nil {
			return err
		}
	}
	return nil
}

// memberCounts is the joined and invited counts: the room's counters for
// its current state, else counted from the member events of the state.
func (e *Engine) memberCounts(tx *store.Tx, rm roomMembers) (joined, invited int) {
	if rm.at == nil {
		return rm.info.Joined, rm.info.Invited
	}
	rm.each(tx, func(_ string, nid uint64) error {
		ev, err := e.loadEvent(tx, nid)
		if err != nil {
			return nil
		}
		switch m, _ := ev.PDU.Membership(); m {
		case "join":
			joined++
		case "invite":
			invited++
		}
		return nil
	})
	return joined, invited
}

// heroes are up to five other joined or invited members with their
// profiles (the same users as /sync's m.heroes).
func (e *Engine) heroes(tx *store.Tx, rm roomMembers, viewer string) []Hero {
	out := []Hero{}
	errEnough := errors.New("enough heroes")
	rm.each(tx, func(sk string, nid uint64) error {
		if sk == viewer {
			return nil
		}
		ev, err := e.loadEvent(tx, nid)
		if err != nil {
			return nil
		}
		if m, _ := ev.PDU.Membership(); m != "join" && m != "invite" {
			return nil
		}
		var c struct {
			DisplayName string `json:"displayname"`
			AvatarURL   string `json:"avatar_url"`
		}
		json.Unmarshal(ev.PDU.Content(), &c)
		out = append(out, Hero{UserID: sk, DisplayName: c.DisplayName, AvatarURL: c.AvatarURL})
		if len(out) == 5 {
			return errEnough
		}
		return nil
	})
	return out
}
