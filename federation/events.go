package federation

import (
	"cmp"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// Serving events to other servers (Server-Server API §"Retrieving
// events", §"Backfilling and retrieving missing events"). Each needs the
// asking server to be in the room.

// inRoom checks that the requesting server may read the room.
func (s *Service) inRoom(w http.ResponseWriter, r *request, roomID string) bool {
	if !s.cfg.Rooms.ServerInRoom(roomID, string(r.origin)) {
		matrixerr.Write(w, matrixerr.Forbidden("your server is not in this room"))
		return false
	}
	return true
}

func (s *Service) event(w http.ResponseWriter, r *request) {
	id := r.PathValue("eventID")
	roomID, err := s.cfg.Rooms.RoomOfEvent(id)
	if err != nil {
		matrixerr.Write(w, matrixerr.NotFound("unknown event"))
		return
	}
	if !s.inRoom(w, r, roomID) {
		return
	}
	pdu, err := s.cfg.Rooms.PDU(string(r.origin), roomID, id)
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	s.writeTransaction(w, []gomatrixserverlib.PDU{pdu})
}

func (s *Service) writeTransaction(w http.ResponseWriter, pdus []gomatrixserverlib.PDU) {
	raws := make([]json.RawMessage, 0, len(pdus))
	for _, p := range pdus {
		raws = append(raws, p.JSON())
	}
	writeJSON(w, http.StatusOK, map[string]any{"origin": s.cfg.ServerName,
		"origin_server_ts": spec.AsTimestamp(s.now()), "pdus": raws})
}

func (s *Service) stateAt(w http.ResponseWriter, r *request) ([]gomatrixserverlib.PDU, []gomatrixserverlib.PDU, bool) {
	roomID := r.PathValue("roomID")
	if !s.inRoom(w, r, roomID) {
		return nil, nil, false
	}
	state, chain, err := s.cfg.Rooms.StateBefore(roomID, r.URL.Query().Get("event_id"))
	if err != nil {
		matrixerr.Write(w, err)
		return nil, nil, false
	}
	return state, chain, true
}

func (s *Service) state(w http.ResponseWriter, r *request) {
	if state, chain, ok := s.stateAt(w, r); ok {
		writeJSON(w, http.StatusOK, fclient.RespState{StateEvents: gomatrixserverlib.NewEventJSONsFromEvents(state),
			AuthEvents: gomatrixserverlib.NewEventJSONsFromEvents(chain)})
	}
}

func (s *Service) stateIDs(w http.ResponseWriter, r *request) {
	if state, chain, ok := s.stateAt(w, r); ok {
		writeJSON(w, http.StatusOK, fclient.RespStateIDs{StateEventIDs: ids(state), AuthEventIDs: ids(chain)})
	}
}

func ids(pdus []gomatrixserverlib.PDU) []string {
	out := make([]string, 0, len(pdus))
	for _, p := range pdus {
		out = append(out, p.EventID())
	}
	return out
}

func (s *Service) eventAuth(w http.ResponseWriter, r *request) {
	roomID := r.PathValue("roomID")
	if !s.inRoom(w, r, roomID) {
		return
	}
	chain, err := s.cfg.Rooms.AuthChain(roomID, r.PathValue("eventID"))
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	writeJSON(w, http.StatusOK, fclient.RespEventAuth{AuthEvents: gomatrixserverlib.NewEventJSONsFromEvents(chain)})
}

// maxBackfill caps what one /backfill or /get_missing_events returns.
const maxBackfill = 100

func (s *Service) backfill(w http.ResponseWriter, r *request) {
	roomID := r.PathValue("roomID")
	if !s.inRoom(w, r, roomID) {
		return
	}
	q := r.URL.Query()
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit <= 0 {
		matrixerr.Write(w, matrixerr.InvalidParam("limit must be a positive integer"))
		return
	}
	if len(q["v"]) == 0 {
		matrixerr.Write(w, matrixerr.MissingParam("v names the events to backfill from"))
		return
	}
	pdus, err := s.cfg.Rooms.WalkBack(string(r.origin), roomID, q["v"], nil, min(limit, maxBackfill), 0, true)
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	s.writeTransaction(w, pdus)
}

func (s *Service) missingEvents(w http.ResponseWriter, r *request) {
	roomID := r.PathValue("roomID")
	if !s.inRoom(w, r, roomID) {
		return
	}
	var req fclient.MissingEvents
	if err := json.Unmarshal(r.body, &req); err != nil {
		matrixerr.Write(w, matrixerr.NotJSON("body is not valid JSON"))
		return
	}
	limit := req.Limit
	if limit <= 0 {
		limit = 10 // the spec's default
	}
	limit = min(limit, maxBackfill)
	// The walk goes breadth first from latest_events, so the events kept
	// under the limit are the ones nearest to them: the requester can
	// then ask again from the oldest it got.
	pdus, err := s.cfg.Rooms.WalkBack(string(r.origin), roomID, req.LatestEvents, req.EarliestEvents, limit, int64(req.MinDepth), false)
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	// Oldest first, as the spec's example and every server expects: each
	// event after the events it points at (a reversed breadth-first walk
	// is not that once the DAG forks), by depth, ties in reverse walk
	// order.
	slices.Reverse(pdus)
	slices.SortStableFunc(pdus, func(a, b gomatrixserverlib.PDU) int { return cmp.Compare(a.Depth(), b.Depth()) })
	writeJSON(w, http.StatusOK, fclient.RespMissingEvents{Events: gomatrixserverlib.NewEventJSONsFromEvents(pdus)})
}
