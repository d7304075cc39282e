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
func (s *Service) inRoom(r *request, roomID string) error {
	if !s.cfg.Rooms.ServerInRoom(roomID, string(r.origin)) {
		return matrixerr.Forbidden("your server is not in this room")
	}
	return nil
}

func (s *Service) event(w http.ResponseWriter, r *request) error {
	id := r.PathValue("eventID")
	roomID, err := s.cfg.Rooms.RoomOfEvent(id)
	if err != nil {
		return matrixerr.NotFound("unknown event")
	}
	if err := s.inRoom(r, roomID); err != nil {
		return err
	}
	pdu, err := s.cfg.Rooms.PDU(string(r.origin), roomID, id)
	if err != nil {
		return err
	}
	s.writeTransaction(w, []gomatrixserverlib.PDU{pdu})
	return nil
}

func (s *Service) writeTransaction(w http.ResponseWriter, pdus []gomatrixserverlib.PDU) {
	raws := make([]json.RawMessage, 0, len(pdus))
	for _, p := range pdus {
		raws = append(raws, p.JSON())
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"origin": s.cfg.ServerName,
		"origin_server_ts": spec.AsTimestamp(s.now()), "pdus": raws})
}

func (s *Service) stateAt(r *request) ([]gomatrixserverlib.PDU, []gomatrixserverlib.PDU, error) {
	roomID := r.PathValue("roomID")
	if err := s.inRoom(r, roomID); err != nil {
		return nil, nil, err
	}
	return s.cfg.Rooms.StateBefore(roomID, r.URL.Query().Get("event_id"))
}

func (s *Service) state(w http.ResponseWriter, r *request) error {
	state, chain, err := s.stateAt(r)
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, fclient.RespState{StateEvents: gomatrixserverlib.NewEventJSONsFromEvents(state),
		AuthEvents: gomatrixserverlib.NewEventJSONsFromEvents(chain)})
	return nil
}

func (s *Service) stateIDs(w http.ResponseWriter, r *request) error {
	state, chain, err := s.stateAt(r)
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, fclient.RespStateIDs{StateEventIDs: ids(state), AuthEventIDs: ids(chain)})
	return nil
}

func ids(pdus []gomatrixserverlib.PDU) []string {
	out := make([]string, 0, len(pdus))
	for _, p := range pdus {
		out = append(out, p.EventID())
	}
	return out
}

func (s *Service) eventAuth(w http.ResponseWriter, r *request) error {
	roomID := r.PathValue("roomID")
	if err := s.inRoom(r, roomID); err != nil {
		return err
	}
	chain, err := s.cfg.Rooms.AuthChain(roomID, r.PathValue("eventID"))
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, fclient.RespEventAuth{AuthEvents: gomatrixserverlib.NewEventJSONsFromEvents(chain)})
	return nil
}

// maxBackfill caps what one /backfill or /get_missing_events returns.
const maxBackfill = 100

func (s *Service) backfill(w http.ResponseWriter, r *request) error {
	roomID := r.PathValue("roomID")
	if err := s.inRoom(r, roomID); err != nil {
		return err
	}
	q := r.URL.Query()
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit <= 0 {
		return matrixerr.InvalidParam("limit must be a positive integer")
	}
	if len(q["v"]) == 0 {
		return matrixerr.MissingParam("v names the events to backfill from")
	}
	pdus, err := s.cfg.Rooms.WalkBack(string(r.origin), roomID, q["v"], nil, min(limit, maxBackfill), 0, true)
	if err != nil {
		return err
	}
	s.writeTransaction(w, pdus)
	return nil
}

func (s *Service) missingEvents(w http.ResponseWriter, r *request) error {
	roomID := r.PathValue("roomID")
	if err := s.inRoom(r, roomID); err != nil {
		return err
	}
	var req fclient.MissingEvents
	if err := json.Unmarshal(r.body, &req); err != nil {
		return matrixerr.NotJSON("body is not valid JSON")
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
		return err
	}
	// Oldest first, as the spec's example and every server expects: each
	// event after the events it points at (a reversed breadth-first walk
	// is not that once the DAG forks), by depth, ties in reverse walk
	// order.
	slices.Reverse(pdus)
	slices.SortStableFunc(pdus, func(a, b gomatrixserverlib.PDU) int { return cmp.Compare(a.Depth(), b.Depth()) })
	matrixerr.WriteJSON(w, http.StatusOK, fclient.RespMissingEvents{Events: gomatrixserverlib.NewEventJSONsFromEvents(pdus)})
	return nil
}
