package federation

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// receiveEDU applies an ephemeral event from origin (Server-Server API
// §"EDUs"). EDUs are best effort: one that does not apply is dropped.
// Each may only speak for users of the origin server, and typing and
// receipts only in rooms whose server ACL allows the origin.
func (s *Service) receiveEDU(ctx context.Context, origin spec.ServerName, edu gomatrixserverlib.EDU) {
	var err error
	switch edu.Type {
	case spec.MTyping:
		err = s.receiveTyping(origin, edu.Content)
	case spec.MReceipt:
		err = s.receiveReceipts(ctx, origin, edu.Content)
	case spec.MPresence:
		err = s.receivePresence(ctx, origin, edu.Content)
	case spec.MDirectToDevice:
		err = s.receiveDirectToDevice(ctx, origin, edu.Content)
	case spec.MDeviceListUpdate, mSigningKeyUpdate:
		err = s.receiveDeviceListNews(ctx, origin, edu.Content)
	default:
		slog.Debug("federation: EDU type not handled", "type", edu.Type, "origin", origin)
		return
	}
	if err != nil {
		slog.Info("federation: EDU dropped", "type", edu.Type, "origin", origin, "err", err)
	}
}

// typingTimeout is how long a remote typing notification lasts unless
// renewed; the spec leaves it to the receiver (Synapse uses 30 s).
const typingTimeout = 30 * time.Second

func (s *Service) receiveTyping(origin spec.ServerName, content []byte) error {
	var t struct {
		RoomID string `json:"room_id"`
		UserID string `json:"user_id"`
		Typing bool   `json:"typing"`
	}
	if err := json.Unmarshal(content, &t); err != nil {
		return err
	}
	if serverOf(t.UserID) != string(origin) {
		return errNotOrigin
	}
	if err := s.checkACL(t.RoomID, origin); err != nil {
		return err
	}
	return s.cfg.Rooms.SetTyping(t.UserID, t.RoomID, t.Typing, typingTimeout)
}

func (s *Service) receiveReceipts(ctx context.Context, origin spec.ServerName, content []byte) error {
	var rooms map[string]map[string]map[string]struct {
		EventIDs []string `json:"event_ids"`
		Data     struct {
			ThreadID string `json:"thread_id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(content, &rooms); err != nil {
		return err
	}
	for roomID, types := range rooms {
		if !s.aclAllows(roomID, origin) {
			continue // Server ACLs apply to a room's EDUs too
		}
		for typ, users := range types {
			if typ != "m.read" {
				continue // private receipts never leave their server
			}
			for userID, r := range users {
				if serverOf(userID) != string(origin) || len(r.EventIDs) == 0 {
					continue
				}
				if _, err := s.cfg.Rooms.SetReceipt(ctx, userID, roomID, typ, r.EventIDs[0], r.Data.ThreadID); err != nil {
					slog.Debug("federation: receipt dropped", "user", userID, "room", roomID, "err", err)
				}
			}
		}
	}
	return nil
}

var errNotOrigin = errors.New("the EDU speaks for a user of another server")
