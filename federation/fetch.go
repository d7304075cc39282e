package federation

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// fetchAuthChain fetches an event's auth chain from origin (/event_auth)
// and stores the events that check out as outliers.
func (s *Service) fetchAuthChain(ctx context.Context, origin spec.ServerName, roomID, eventID string) error {
	version, err := s.cfg.Rooms.RoomVersion(roomID)
	if err != nil {
		return err
	}
	res, err := s.cfg.Client.GetEventAuth(ctx, s.cfg.ServerName, origin, version, roomID, eventID)
	if err != nil {
		return err
	}
	return s.cfg.Rooms.StoreOutliers(ctx, roomID, s.checkedEvents(ctx, roomID, res.AuthEvents))
}

// fetchStateAt fetches the state before an event and the event itself
// from origin (/state, /event), so events after it can be checked
// although the history between is missing here.
func (s *Service) fetchStateAt(ctx context.Context, origin spec.ServerName, roomID, eventID string) error {
	if s.cfg.Rooms.HasStateAt(eventID) {
		return nil
	}
	version, err := s.cfg.Rooms.RoomVersion(roomID)
	if err != nil {
		return err
	}
	res, err := s.cfg.Client.LookupState(ctx, s.cfg.ServerName, origin, roomID, eventID, version)
	if err != nil {
		return err
	}
	state := s.checkedEvents(ctx, roomID, res.StateEvents)
	auth := s.checkedEvents(ctx, roomID, res.AuthEvents)
	if err := s.cfg.Rooms.StoreOutliers(ctx, roomID, append(auth, state...)); err != nil {
		return err
	}
	txn, err := s.cfg.Client.GetEvent(ctx, s.cfg.ServerName, origin, eventID)
	if err != nil {
		return err
	}
	if len(txn.PDUs) != 1 {
		return errors.New("/event answered without the event")
	}
	pdu, err := s.parsePDU(ctx, txn.PDUs[0])
	if err != nil {
		return err
	}
	if pdu.EventID() != eventID {
		return errors.New("/event answered with another event")
	}
	ids := make([]string, 0, len(state))
	for _, p := range state {
		ids = append(ids, p.EventID())
	}
	return s.cfg.Rooms.IngestWithState(ctx, pdu, ids)
}

// checkedEvents parses and signature-checks events another server sent
// in a response, dropping those that fail (§"Checks performed on receipt
// of a PDU" apply to them as to pushed events).
func (s *Service) checkedEvents(ctx context.Context, roomID string, raws []spec.RawJSON) []gomatrixserverlib.PDU {
	var out []gomatrixserverlib.PDU
	for _, raw := range raws {
		p, err := s.parsePDU(ctx, json.RawMessage(raw))
		if err == nil && p != nil && p.RoomID().String() == roomID {
			out = append(out, p)
		}
	}
	return out
}

// serverOf returns the server name of a user ID.
func serverOf(userID string) string {
	_, server, _ := strings.Cut(userID, ":")
	return server
}
