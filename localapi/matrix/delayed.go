package matrix

import (
	"cmp"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hearth-chat/hearth/internal/delayed"
	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// Delayed events, MSC4140 (internal/delayed does the scheduling). Two
// generations of the proposal are served, both under its unstable prefix:
//
//   - what Synapse and matrix-js-sdk 36 (Element Call) speak: the
//     org.matrix.msc4140.delay query parameter on PUT /send and PUT
//     /state, answered with {"delay_id"}, and POST
//     /delayed_events/{delay_id} with {"action": "cancel"|"restart"|"send"};
//   - the current MSC text: PUT /rooms/{roomId}/delayed_event/{eventType}/{txnId}
//     with {"delay", "state_key", "content"}, POST
//     /delayed_events/{delay_id}/{action}, and GET /delayed_events (with
//     its filters, ordering and pages) and /delayed_events/{delay_id}.
//
// The management POSTs need no access token: the delay ID, unguessable,
// is the capability (MSC4140 "Delegating delayed events"). When a token
// is given, only its user's delayed events are found.
const msc4140 = "/_matrix/client/unstable/org.matrix.msc4140"

// Management requests (every POST and GET here) are limited per user, or
// per client address without a token: Element Call restarts its "leave"
// event every few seconds per call, and the burst and rate are those
// Element Call's documentation asks Synapse's rc_delayed_event_mgmt for
// (20, and one a second).
const (
	delayedMgmtBurst = 20
	delayedMgmtLeak  = time.Second
)

type delayedAPI struct {
	svc     *delayed.Service
	mu      sync.Mutex
	limiter *limiter
	now     func() time.Time
}

// SetDelayed wires the delayed-events service; without it (or with it
// disabled) the delay parameter is refused and /versions says so.
func (s *Server) SetDelayed(svc *delayed.Service) {
	s.delayed.svc = svc
}

func (s *Server) delayedRoutes() {
	s.delayed = &delayedAPI{limiter: newLimiter(delayedMgmtBurst, delayedMgmtLeak, maxLimiterKeys), now: time.Now}
	m, a := s.mux, s.authed
	m.HandleFunc("PUT "+msc4140+"/rooms/{roomId}/delayed_event/{eventType}/{txnId}", a(s.putDelayedEvent))
	update := s.optionallyAuthed(s.updateDelayedEvent)
	m.HandleFunc("POST "+msc4140+"/delayed_events/{delayId}", update)
	m.HandleFunc("POST "+msc4140+"/delayed_events/{delayId}/{action}", update)
	m.HandleFunc("GET "+msc4140+"/delayed_events", a(s.listDelayedEvents))
	m.HandleFunc("GET "+msc4140+"/delayed_events/{delayId}", a(s.getDelayedEvent))
}

// unstableFeaturesNow is /versions' unstable_features with
// org.matrix.msc4140 saying whether delayed events can be scheduled.
func (s *Server) unstableFeaturesNow() map[string]bool {
	f := maps.Clone(unstableFeatures)
	f["org.matrix.msc4140"] = s.delayed.svc.Enabled()
	return f
}

// delayedLimit takes one management request from key's bucket.
func (s *Server) delayedLimit(key string) error {
	d := s.delayed
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	if wait := d.limiter.wait(key, now); wait > 0 {
		return matrixerr.LimitExceeded(wait.Milliseconds())
	}
	d.limiter.add(key, 1, now)
	return nil
}

// parseDelay reads a delay in milliseconds: a positive integer.
func parseDelay(v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, matrixerr.InvalidParam("org.matrix.msc4140.delay must be a positive integer of milliseconds")
	}
	return n, nil
}

// delayedSend is the early branch of PUT /send and PUT /state: with the
// org.matrix.msc4140.delay parameter the event is scheduled instead of
// sent, and the answer is {"delay_id"}. It reports whether it took the
// request, and the error to answer with.
func (s *Server) delayedSend(w http.ResponseWriter, r *http.Request, c *caller, typ string, stateKey *string, content []byte) (bool, error) {
	q := r.URL.Query()
	if q.Has("org.matrix.msc4140.parent_delay_id") {
		// An early revision's events sent by another one's action:
		// Synapse never had them, and sending at once would be wrong.
		return true, matrixerr.InvalidParam("org.matrix.msc4140.parent_delay_id is not supported")
	}
	if !q.Has("org.matrix.msc4140.delay") {
		return false, nil
	}
	delay, err := parseDelay(q.Get("org.matrix.msc4140.delay"))
	if err != nil {
		return true, err
	}
	txn := ""
	if stateKey == nil {
		txn = r.PathValue("txnId")
	}
	return true, s.scheduleDelayed(w, r, c, delayed.Request{TxnID: txn, Type: typ, StateKey: stateKey, Content: content, Delay: delay})
}

func (s *Server) scheduleDelayed(w http.ResponseWriter, r *http.Request, c *caller, req delayed.Request) error {
	svc := s.delayed.svc
	if !svc.Enabled() {
		return matrixerr.Forbidden("delayed events are disabled on this server")
	}
	req.UserID, req.Session, req.RoomID = c.UserID, c.Session, r.PathValue("roomId")
	if !s.rooms.RoomExists(req.RoomID) {
		return matrixerr.Forbidden("unknown room")
	}
	id, err := svc.Schedule(r.Context(), req)
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]string{"delay_id": id})
	return nil
}

// putDelayedEvent: PUT /rooms/{roomId}/delayed_event/{eventType}/{txnId}
// (MSC4140 "Scheduling a delayed event").
func (s *Server) putDelayedEvent(w http.ResponseWriter, r *http.Request, c *caller) error {
	var body struct {
		Delay    json.RawMessage `json:"delay"`
		StateKey *string         `json:"state_key"`
		Content  json.RawMessage `json:"content"`
	}
	if err := readJSON(r, &body); err != nil {
		return err
	}
	if body.Delay == nil || body.Content == nil {
		return matrixerr.MissingParam("delay and content are required")
	}
	delay, err := parseDelay(string(body.Delay))
	if err != nil {
		return matrixerr.InvalidParam("delay must be a positive integer of milliseconds")
	}
	if !strings.HasPrefix(strings.TrimSpace(string(body.Content)), "{") {
		return matrixerr.BadJSON("content must be an object")
	}
	typ := r.PathValue("eventType")
	if typ == "m.room.member" && body.StateKey != nil {
		var m struct {
			Membership string `json:"membership"`
		}
		json.Unmarshal(body.Content, &m)
		switch m.Membership {
		case "join", "leave", "invite", "ban", "knock":
		default:
			return matrixerr.BadJSON("invalid membership")
		}
	}
	txn := ""
	if body.StateKey == nil {
		txn = r.PathValue("txnId")
	}
	return s.scheduleDelayed(w, r, c, delayed.Request{TxnID: txn, Type: typ, StateKey: body.StateKey, Content: body.Content, Delay: delay})
}

// updateDelayedEvent: POST /delayed_events/{delay_id} with {"action"},
// or POST /delayed_events/{delay_id}/{action} (MSC4140 "Managing
// scheduled delayed events").
// With a token (a user's or an appservice's) it acts only on the caller's
// events; without one, knowing the delay ID is the capability.
func (s *Server) updateDelayedEvent(w http.ResponseWriter, r *http.Request, c *caller) error {
	action := r.PathValue("action")
	if !strings.HasSuffix(r.Pattern, "{action}") {
		var body struct {
			Action *string `json:"action"`
		}
		if err := readJSON(r, &body); err != nil {
			return err
		}
		if body.Action == nil {
			return matrixerr.MissingParam("action is required")
		}
		action = *body.Action
	}
	key, owner := clientAddr(r), ""
	if c != nil {
		key, owner = c.UserID, c.UserID
	}
	switch action {
	case "cancel", "restart", "send":
	default:
		return matrixerr.InvalidParam("action must be cancel, restart or send")
	}
	if err := s.delayedLimit(key); err != nil {
		return err
	}
	svc, id := s.delayed.svc, r.PathValue("delayId")
	if svc == nil {
		return matrixerr.NotFound("no delayed event with this delay_id")
	}
	var err error
	switch action {
	case "cancel":
		err = svc.Cancel(r.Context(), owner, id)
	case "restart":
		err = svc.Restart(r.Context(), owner, id)
	case "send":
		if err = svc.SendNow(r.Context(), owner, id); err != nil {
			err = roomErr(err) // as a send to the room would have answered
		}
	}
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

// delayedView is a delayed event as GET /delayed_events shows it.
type delayedView struct {
	DelayID      string          `json:"delay_id"`
	RoomID       string          `json:"room_id"`
	Type         string          `json:"type"`
	StateKey     *string         `json:"state_key,omitempty"`
	Delay        int64           `json:"delay"`
	RunningSince int64           `json:"running_since"`
	Content      json.RawMessage `json:"content"`
	Error        json.RawMessage `json:"error,omitempty"`
	EventID      string          `json:"event_id,omitempty"`
	FinalisedTS  int64           `json:"origin_server_ts,omitempty"`
	Outcome      string          `json:"outcome,omitempty"`
	Reason       string          `json:"reason,omitempty"`
}

func viewDelayed(e *delayed.Event) delayedView {
	return delayedView{DelayID: e.ID, RoomID: e.RoomID, Type: e.Type, StateKey: e.StateKey, Delay: e.Delay,
		RunningSince: e.RunningSince, Content: e.Content, Error: e.Error, EventID: e.EventID,
		FinalisedTS: e.FinalisedTS, Outcome: e.Outcome, Reason: e.Reason}
}

// getDelayedEvent: GET /delayed_events/{delay_id}, the caller's own.
func (s *Server) getDelayedEvent(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := s.delayedLimit(c.UserID); err != nil {
		return err
	}
	if s.delayed.svc == nil {
		return matrixerr.NotFound("no delayed event with this delay_id")
	}
	e, err := s.delayed.svc.Get(c.UserID, r.PathValue("delayId"))
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, viewDelayed(e))
	return nil
}

// delayedPage is how many delayed events one page of the list holds (the
// MSC leaves it to the server; a user has at most 100 scheduled).
const delayedPage = 50

// listDelayedEvents: GET /delayed_events (MSC4140 "Getting a list of
// delayed events"): the caller's scheduled and finalised events, filtered
// by status, room_id, type, outcome and reason, ordered by order_by
// (send_ts, origin_server_ts or running_since) in direction dir, from
// since_ts (default now; "end" for the latest) or a from token.
func (s *Server) listDelayedEvents(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := s.delayedLimit(c.UserID); err != nil {
		return err
	}
	q := r.URL.Query()
	bad := func(name string) error {
		return matrixerr.InvalidParam("unsupported value of " + name)
	}
	oneOf := func(name string, allowed ...string) (map[string]bool, error) {
		vals := q[name]
		if len(vals) == 0 {
			return nil, nil
		}
		set := map[string]bool{}
		for _, v := range vals {
			if !slices.Contains(allowed, v) {
				return nil, bad(name)
			}
			set[v] = true
		}
		return set, nil
	}
	status, err := oneOf("status", "scheduled", "finalised")
	if err != nil {
		return err
	}
	outcome, err := oneOf("outcome", delayed.OutcomeSend, delayed.OutcomeCancel, delayed.OutcomeError)
	if err != nil {
		return err
	}
	reason, err := oneOf("reason", delayed.ReasonAction, delayed.ReasonDelay)
	if err != nil {
		return err
	}
	orderBy := cmp.Or(q.Get("order_by"), "send_ts")
	if orderBy != "send_ts" && orderBy != "origin_server_ts" && orderBy != "running_since" {
		return bad("order_by")
	}
	back := false
	switch q.Get("dir") {
	case "", "f":
	case "b":
		back = true
	default:
		return bad("dir")
	}
	// The page starts at since_ts (inclusive) or after the from token's
	// item (exclusive).
	var startTS int64
	startID, haveID := "", false
	switch since := q.Get("since_ts"); {
	case q.Has("from"):
		ts, id, ok := strings.Cut(q.Get("from"), "_")
		n, err := strconv.ParseInt(ts, 10, 64)
		if !ok || err != nil || id == "" {
			return bad("from")
		}
		startTS, startID, haveID = n, id, true
	case since == "end":
		startTS = int64(^uint64(0) >> 1)
		if !back {
			startTS = -1 << 63
		}
	case since != "":
		n, err := strconv.ParseInt(since, 10, 64)
		if err != nil {
			return bad("since_ts")
		}
		startTS = n
	default:
		startTS = s.delayed.now().UnixMilli()
		if status == nil {
			// The default list is the scheduled events (see key below); an
			// event finalised in this very millisecond is not one of them.
			status = map[string]bool{"scheduled": true}
		}
	}
	var all []*delayed.Event
	if s.delayed.svc != nil {
		var err error
		if all, err = s.delayed.svc.List(c.UserID); err != nil {
			return err
		}
	}
	// A finalised event's send_ts is when it left the schedule if that
	// was before its intended time (sent or cancelled early by an
	// action): its send time is behind it, so the default list — from now
	// on, in send_ts order — holds the scheduled events alone, which is
	// what clients of the earlier revision (matrix-js-sdk 36's
	// _unstable_getDelayedEvents, Synapse) take the list to be.
	key := func(e *delayed.Event) int64 {
		switch {
		case orderBy == "running_since":
			return e.RunningSince
		case e.Scheduled():
			return e.Due()
		case orderBy == "origin_server_ts":
			return e.FinalisedTS
		}
		return min(e.Due(), e.FinalisedTS)
	}
	var sel []*delayed.Event
	for _, e := range all {
		st := "scheduled"
		if !e.Scheduled() {
			st = "finalised"
		}
		switch {
		case status != nil && !status[st],
			q.Has("room_id") && e.RoomID != q.Get("room_id"),
			q.Has("type") && e.Type != q.Get("type"),
			outcome != nil && !outcome[e.Outcome],
			reason != nil && !reason[e.Reason]:
			continue
		}
		// Past the start point in the direction of travel?
		k := key(e)
		c := cmp.Compare(k, startTS)
		if haveID && c == 0 {
			c = cmp.Compare(e.ID, startID)
			if c == 0 {
				continue
			}
		}
		if (!back && c < 0) || (back && c > 0) {
			continue
		}
		sel = append(sel, e)
	}
	slices.SortFunc(sel, func(a, b *delayed.Event) int {
		c := cmp.Or(cmp.Compare(key(a), key(b)), cmp.Compare(a.ID, b.ID))
		if back {
			return -c
		}
		return c
	})
	resp := map[string]any{}
	if len(sel) > delayedPage {
		sel = sel[:delayedPage]
		last := sel[len(sel)-1]
		token := strconv.FormatInt(key(last), 10) + "_" + last.ID
		if back {
			resp["prev_batch"] = token
		} else {
			resp["next_batch"] = token
		}
	}
	views := make([]delayedView, 0, len(sel))
	for _, e := range sel {
		views = append(views, viewDelayed(e))
	}
	resp["delayed_events"] = views
	matrixerr.WriteJSON(w, http.StatusOK, resp)
	return nil
}
