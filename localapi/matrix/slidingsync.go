package matrix

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/push"
)

// Simplified Sliding Sync (MSC4186): POST
// /_matrix/client/unstable/org.matrix.simplified_msc3575/sync. The room
// list and room results come from the room engine (internal/room
// sliding*.go); this file windows the list and keeps the long poll,
// slidingsync_conn.go the connections, slidingsync_req.go the request,
// slidingsync_ext.go the extensions.

const slidingSyncPath = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"

func (s *Server) slidingSyncRoutes() {
	s.mux.HandleFunc("POST "+slidingSyncPath, s.authed(s.slidingSync))
}

type slidingResponse struct {
	TxnID      string                       `json:"txn_id,omitempty"`
	Pos        string                       `json:"pos"`
	Lists      map[string]slidingListResult `json:"lists"`
	Rooms      map[string]*slidingRoomResp  `json:"rooms"`
	Extensions map[string]any               `json:"extensions"`
}

type slidingListResult struct {
	Count int `json:"count"`
}

// slidingRoomResp is a RoomResult (MSC4186 §"RoomResult"). Field names are
// those clients read: `timeline` and `invite_state` (ruma, matrix-js-sdk);
// the MSC's current text also names the latter `stripped_state`, which is
// sent too.
type slidingRoomResp struct {
	Name              json.RawMessage   `json:"name,omitempty"`
	Avatar            json.RawMessage   `json:"avatar,omitempty"`
	Heroes            []room.Hero       `json:"heroes,omitempty"`
	Initial           bool              `json:"initial,omitempty"`
	IsDM              *bool             `json:"is_dm,omitempty"`
	Membership        string            `json:"membership,omitempty"`
	Lists             []string          `json:"lists,omitempty"`
	BumpStamp         *uint64           `json:"bump_stamp,omitempty"`
	ExpandedTimeline  bool              `json:"expanded_timeline,omitempty"`
	RequiredState     []any             `json:"required_state,omitempty"`
	Timeline          []any             `json:"timeline,omitempty"`
	PrevBatch         string            `json:"prev_batch,omitempty"`
	Limited           bool              `json:"limited,omitempty"`
	NumLive           *int              `json:"num_live,omitempty"`
	JoinedCount       *int              `json:"joined_count,omitempty"`
	InvitedCount      *int              `json:"invited_count,omitempty"`
	NotificationCount *int              `json:"notification_count,omitempty"`
	HighlightCount    *int              `json:"highlight_count,omitempty"`
	InviteState       []json.RawMessage `json:"invite_state,omitempty"`
	StrippedState     []json.RawMessage `json:"stripped_state,omitempty"`
}

// slidingSync answers one request of a connection: the rooms of its lists
// and subscriptions that are new to the connection or changed since its
// pos, waiting up to timeout (a channel receive on the stream notifier,
// as /sync does) when there is nothing to say.
func (s *Server) slidingSync(w http.ResponseWriter, r *http.Request, c *caller) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var req slidingRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return matrixerr.BadJSON("bad sliding sync request: " + err.Error())
	}
	q := r.URL.Query()
	pos := q.Get("pos")
	if pos == "" && req.Pos != nil {
		pos = *req.Pos
	}
	timeout := time.Duration(0)
	if v := q.Get("timeout"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 {
			return matrixerr.InvalidParam("timeout must be a non-negative integer")
		}
		timeout = min(time.Duration(ms)*time.Millisecond, maxSyncTimeout)
	} else if req.Timeout != nil {
		if *req.Timeout < 0 {
			return matrixerr.InvalidParam("timeout must be a non-negative integer")
		}
		timeout = min(time.Duration(min(*req.Timeout, int64(maxSyncTimeout/time.Millisecond)))*time.Millisecond, maxSyncTimeout)
	}
	presence := q.Get("set_presence")
	if presence == "" {
		presence = req.SetPresence
	}
	if presence == "" {
		presence = "online"
	}
	if presence != "online" && presence != "offline" && presence != "unavailable" {
		return matrixerr.InvalidParam("set_presence must be online, offline or unavailable")
	}
	parsed, err := req.parse(c.UserID)
	if err != nil {
		return err
	}
	exts, err := parseSlidingExtensions(req.Extensions)
	if err != nil {
		return err
	}
	key := slidingKey{user: c.UserID, device: c.DeviceID, connID: req.ConnID}
	var conn *slidingConn
	var base *slidingState
	if pos == "" {
		conn, base = s.sliding.start(key)
		timeout = 0 // MSC4186: timeout is ignored without pos
	} else if conn, base, err = s.sliding.resume(key, pos); err != nil {
		return err
	}
	defer s.presence.touch(r.Context(), c, presence)()

	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	for {
		now, eph := s.rooms.Pos()
		resp, next, news, err := s.buildSliding(ctx, c, parsed, exts, base, now, eph)
		if err != nil {
			return err
		}
		if news || timeout == 0 {
			s.sendSliding(w, conn, req.TxnID, resp, next)
			return nil
		}
		if err := s.rooms.Wait(ctx, now, eph); err != nil {
			if r.Context().Err() != nil {
				// The client went away, or the daemon is stopping and ends
				// every request's context to answer long polls at once.
				// Either way the connection keeps its state (no new pos),
				// and the answer is an error a client retries — after a
				// restart its pos is M_UNKNOWN_POS — never an empty 200.
				return matrixerr.Unknown("the request ended before the long poll did: retry").
					WithStatus(http.StatusServiceUnavailable)
			}
			s.sendSliding(w, conn, req.TxnID, resp, next)
			return nil
		}
		if s.push != nil {
			// As /sync does: let the push evaluator publish the new
			// events' counts before building, rather than computing them.
			woke, _ := s.rooms.Pos()
			s.push.AwaitCounts(ctx, woke)
		}
	}
}

func (s *Server) sendSliding(w http.ResponseWriter, conn *slidingConn, txnID string, resp *slidingResponse, next *slidingState) {
	resp.Pos = s.sliding.commit(conn, next)
	resp.TxnID = txnID
	matrixerr.WriteJSON(w, http.StatusOK, resp)
}

// slidingPick is a room chosen by the lists and subscriptions.
type slidingPick struct {
	cfg      roomConfig
	lists    []string
	stateKey string // cfg.stateKey(), interned
}

// buildSliding builds the response from base's position to now. news says
// whether it holds anything the client has not seen: a room, a list count
// that changed, or extension data.
func (s *Server) buildSliding(ctx context.Context, c *caller, p *parsedSliding, exts *slidingExtensions,
	base *slidingState, now, eph uint64) (*slidingResponse, *slidingState, bool, error) {
	next := base.clone()
	next.pos, next.eph = now, eph
	resp := &slidingResponse{Lists: map[string]slidingListResult{}, Rooms: map[string]*slidingRoomResp{},
		Extensions: map[string]any{}}
	ignored := s.ignoredUsers(c.Localpart)
	entries, err := s.rooms.SlidingList(c.UserID, now, ignored, inviteHiderIn(c.Localpart))
	if err != nil {
		return nil, nil, false, err
	}
	sortSlidingEntries(entries)
	byID := make(map[string]*room.SlidingEntry, len(entries))
	for i := range entries {
		byID[entries[i].RoomID] = &entries[i]
	}
	dms := s.directRooms(c)
	news := false

	picks := map[string]*slidingPick{}
	pick := func(id string, cfg roomConfig, list string) {
		pk := picks[id]
		if pk == nil {
			pk = &slidingPick{cfg: cfg}
			picks[id] = pk
		} else {
			pk.cfg = pk.cfg.merge(cfg)
		}
		if list != "" {
			pk.lists = append(pk.lists, list)
		}
	}
	for _, l := range p.lists {
		match, err := s.slidingFilter(c, l.filters, dms)
		if err != nil {
			return nil, nil, false, err
		}
		n := 0
		for i := range entries {
			en := &entries[i]
			if en.SelfLeft {
				// Rooms the user left themselves are listed only if this
				// connection sent them before (MSC4186 §"Lists").
				if _, sent := base.sent[en.RoomID]; !sent {
					continue
				}
			}
			if !match(en) {
				continue
			}
			if inRanges(n, l.ranges) {
				pick(en.RoomID, l.cfg, l.key)
			}
			n++
		}
		resp.Lists[l.key] = slidingListResult{Count: n}
		if old, ok := base.counts[l.key]; !ok || old != n {
			news = true
		}
		next.counts[l.key] = n
	}
	for id, cfg := range p.subs {
		if _, ok := byID[id]; ok {
			pick(id, cfg, "")
		}
	}

	var ownReceipt, stateMoved map[string]bool
	if base.pos != 0 {
		if ownReceipt, stateMoved, err = s.rooms.SlidingChanges(c.UserID, base.pos, now); err != nil {
			return nil, nil, false, err
		}
	}
	var live *push.Live
	interned := interner{}
	batch := room.SlidingBatch{UserID: c.UserID, Device: c.Session, Now: now, Ignored: ignored, HideInviteIn: inviteHiderIn(c.Localpart)}
	for id, pk := range picks {
		en := byID[id]
		was, sent := base.sent[id]
		rr := room.SlidingRoomRequest{RoomID: id, TimelineLimit: pk.cfg.timelineLimit, RequiredState: pk.cfg.state}
		// A grown timeline_limit is answered at once with the latest
		// events (expanded_timeline), not at the room's next event.
		expand := sent && en.Membership == "join" && pk.cfg.timelineLimit > was.limit
		pk.stateKey = interned.intern(pk.cfg.stateKey())
		moreState := sent && en.Membership != "invite" && en.Membership != "knock" && stateExpands(was.state, pk.stateKey)
		switch {
		case !sent:
			if base.counter > 0 {
				rr.LivePos = base.pos
			}
		case en.LastPos > was.pos || en.MemberPos > was.pos || expand || moreState || stateMoved[id]:
			rr.Since, rr.LivePos, rr.Expand, rr.StateExpanded = was.pos, was.pos, expand, moreState
		case (ownReceipt[id] && en.Membership == "join") || dms[id] != was.dm:
			// Only the unread counts changed (the user read the room), or
			// whether it is a DM, which must then be sent (MSC4186 is_dm).
			out := &slidingRoomResp{Lists: pk.lists}
			if en.Membership == "join" {
				if err := s.slidingUnread(ctx, c, id, now, &live, out); err != nil {
					return nil, nil, false, err
				}
			}
			if dm := dms[id]; dm != was.dm {
				out.IsDM = &dm
			}
			resp.Rooms[id] = out
			next.sent[id] = sentRoom{pos: now, limit: was.limit, dm: dms[id], state: was.state}
			news = true
			continue
		default:
			continue // nothing new since the connection sent it
		}
		batch.Rooms = append(batch.Rooms, rr)
	}
	results, err := s.rooms.SlidingRooms(batch)
	if err != nil {
		return nil, nil, false, err
	}
	fresh := map[string]bool{}
	for _, rr := range batch.Rooms {
		sr := results[rr.RoomID]
		if sr == nil || !sr.Changed {
			continue
		}
		en := byID[rr.RoomID]
		out := &slidingRoomResp{Membership: sr.Membership, Lists: picks[rr.RoomID].lists,
			Initial: rr.Since == 0 || sr.Whole, Heroes: sr.Heroes, ExpandedTimeline: rr.Expand && !sr.Whole}
		if out.Initial || en.BumpStamp > rr.Since {
			b := en.BumpStamp
			out.BumpStamp = &b
		}
		if isDM := dms[rr.RoomID]; out.Initial || isDM != base.sent[rr.RoomID].dm {
			out.IsDM = &isDM
		}
		if sr.InviteState != nil {
			out.InviteState, out.StrippedState = sr.InviteState, sr.InviteState
		} else {
			out.Name, out.Avatar = nullableString(sr.Name), nullableString(sr.Avatar)
			out.Timeline = make([]any, len(sr.Timeline))
			for i, ev := range sr.Timeline {
				out.Timeline[i] = ev
			}
			out.RequiredState = make([]any, len(sr.RequiredState))
			for i, ev := range sr.RequiredState {
				out.RequiredState[i] = ev
			}
			out.PrevBatch = pageToken(sr.PrevBatch)
			out.Limited = sr.Limited
			numLive := sr.NumLive
			out.NumLive = &numLive
			if sr.CountsIncluded {
				j, iv := sr.Joined, sr.Invited
				out.JoinedCount, out.InvitedCount = &j, &iv
			}
			if sr.Membership == "join" {
				if err := s.slidingUnread(ctx, c, rr.RoomID, now, &live, out); err != nil {
					return nil, nil, false, err
				}
			}
		}
		resp.Rooms[rr.RoomID] = out
		if out.Initial {
			fresh[rr.RoomID] = true
		}
		held := rr.TimelineLimit
		if !rr.Expand && rr.Since != 0 && !sr.Limited {
			// No gap: the client still holds what it had, plus these.
			held = max(held, base.sent[rr.RoomID].limit)
		}
		next.sent[rr.RoomID] = sentRoom{pos: now, limit: held, dm: dms[rr.RoomID],
			state: picks[rr.RoomID].stateKey}
		news = true
	}
	if extNews, err := s.slidingExtensions(ctx, c, exts, p, picks, fresh, base, next, resp); err != nil {
		return nil, nil, false, err
	} else if extNews {
		news = true
	}
	return resp, next, news, nil
}

// nullableString is a name or avatar for the response: absent (nil), or
// null when the room's event carries none (MSC4186: removed).
func nullableString(s *string) json.RawMessage {
	if s == nil {
		return nil
	}
	if *s == "" {
		return json.RawMessage("null")
	}
	b, _ := json.Marshal(*s)
	return b
}

func inRanges(i int, ranges [][2]int) bool {
	if len(ranges) == 0 {
		return true // no range: the whole list (MSC4186 §"SyncListConfig")
	}
	for _, r := range ranges {
		if i >= r[0] && i <= r[1] {
			return true
		}
	}
	return false
}

// interner shares one copy of equal strings (the rooms of a list have the
// same required_state key), so a connection's memory grows by a pointer
// per room, not a key.
type interner map[string]string

func (in interner) intern(s string) string {
	if v, ok := in[s]; ok {
		return v
	}
	in[s] = s
	return s
}
