package federation

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

// Knocking (Server-Server API §"Knocking upon a room", room versions 7+):
// like joining, a template from make_knock, the signed event back through
// send_knock. gomatrixserverlib has only the client calls, so both
// handlers are here.

func (s *Service) knockRoutes() {
	s.handle("GET /_matrix/federation/v1/make_knock/{roomID}/{userID}", s.makeKnock)
	s.handle("PUT /_matrix/federation/v1/send_knock/{roomID}/{eventID}", s.sendKnock)
}

func (s *Service) makeKnock(w http.ResponseWriter, r *request) error {
	roomID, userID, version, err := s.membershipPath(r)
	if err != nil {
		return err
	}
	if !slices.Contains(r.URL.Query()["ver"], string(version)) {
		matrixerr.WriteJSON(w, http.StatusBadRequest, map[string]any{"errcode": "M_INCOMPATIBLE_ROOM_VERSION",
			"error": "your server does not support this room's version", "room_version": version})
		return nil
	}
	if !knockable(version) {
		return matrixerr.Forbidden("this room's version does not allow knocking")
	}
	if serverOf(userID.String()) != string(r.origin) {
		return matrixerr.Forbidden("you may only knock for your own users")
	}
	sk := userID.String()
	proto := &gomatrixserverlib.ProtoEvent{SenderID: sk, RoomID: roomID.String(), Type: spec.MRoomMember, StateKey: &sk}
	if err := proto.SetContent(map[string]any{"membership": spec.Knock}); err != nil {
		return err
	}
	pdu, auth, err := s.cfg.Rooms.Template(proto)
	if err != nil {
		return err
	}
	provider, err := gomatrixserverlib.NewAuthEvents(auth)
	if err == nil {
		err = gomatrixserverlib.Allowed(pdu, provider, userIDForSender)
	}
	if err != nil {
		return gmslError(err)
	}
	matrixerr.WriteJSON(w, http.StatusOK, fclient.RespMakeKnock{KnockEvent: *proto, RoomVersion: version})
	return nil
}

func knockable(v gomatrixserverlib.RoomVersion) bool {
	switch v {
	case "1", "2", "3", "4", "5", "6":
		return false
	}
	return true
}

func (s *Service) sendKnock(w http.ResponseWriter, r *request) error {
	roomID := r.PathValue("roomID")
	version, err := s.cfg.Rooms.RoomVersion(roomID)
	if err != nil {
		return matrixerr.NotFound("this server is not in the room")
	}
	pdu, err := parseUntrusted(version, roomID, r.body)
	if err != nil || pdu == nil || pdu.EventID() != r.PathValue("eventID") {
		return matrixerr.BadJSON("invalid knock event")
	}
	m, _ := pdu.Membership()
	if pdu.Type() != spec.MRoomMember || m != spec.Knock || !pdu.StateKeyEquals(string(pdu.SenderID())) {
		return matrixerr.BadJSON("not a knock of its sender")
	}
	if serverOf(string(pdu.SenderID())) != string(r.origin) {
		return matrixerr.Forbidden("the knock was not sent by its sender's server")
	}
	if err := gomatrixserverlib.VerifyEventSignatures(r.Context(), pdu, s.cfg.KeyRing, userIDForSender); err != nil {
		return matrixerr.Forbidden("bad signature: " + err.Error())
	}
	if err := s.cfg.Rooms.Ingest(r.Context(), pdu, room.IngestOptions{Relay: true}); err != nil {
		return gmslError(forbiddenIfRejected(err))
	}
	stripped, err := s.cfg.Rooms.StrippedState(roomID, "")
	if err != nil {
		return err
	}
	// Whole events, not fclient's stripped form (invite_state.go).
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"knock_room_state": stripped})
	return nil
}

// Knock knocks on a room this server is not in, through the via servers,
// and keeps the knock (with the room's stripped state the resident server
// answered with) as the user's membership.
func (s *Service) Knock(ctx context.Context, userID, roomID string, via []string, reason string) error {
	var last error = matrixerr.NotFound("no server to knock through")
	for _, server := range via {
		if server == "" || server == string(s.cfg.ServerName) {
			continue
		}
		if last = s.knockVia(ctx, userID, roomID, spec.ServerName(server), reason); last == nil {
			return nil
		}
	}
	return last
}

func (s *Service) knockVia(ctx context.Context, userID, roomID string, server spec.ServerName, reason string) error {
	res, err := s.cfg.Client.MakeKnock(ctx, s.cfg.ServerName, server, roomID, userID, room.SupportedVersions())
	if err != nil {
		return remoteError(string(server), err)
	}
	ver, err := gomatrixserverlib.GetRoomVersion(res.RoomVersion)
	if err != nil {
		return err
	}
	proto := res.KnockEvent
	if proto.SenderID != userID || proto.Type != spec.MRoomMember || proto.StateKey == nil || *proto.StateKey != userID {
		return errors.New("make_knock answered with a template for another event")
	}
	content := map[string]any{"membership": spec.Knock}
	if reason != "" {
		content["reason"] = reason
	}
	if err := proto.SetContent(content); err != nil {
		return err
	}
	pdu, err := ver.NewEventBuilderFromProtoEvent(&proto).Build(s.now(), s.cfg.ServerName, s.cfg.KeyID, s.cfg.Key)
	if err != nil {
		return err
	}
	// send_knock by hand: fclient's answer type keeps only the stripped
	// fields of knock_room_state, whose events are whole since spec v1.16
	// (invite_state.go).
	var sent struct {
		KnockRoomState []json.RawMessage `json:"knock_room_state"`
	}
	path := "/_matrix/federation/v1/send_knock/" + url.PathEscape(roomID) + "/" + url.PathEscape(pdu.EventID())
	if err := s.signedRequest(ctx, "PUT", string(server), path, json.RawMessage(pdu.JSON()), &sent); err != nil {
		return remoteError(string(server), err)
	}
	if err := keepRoomState(pdu, "knock_room_state", sent.KnockRoomState); err != nil {
		return err
	}
	return s.cfg.Rooms.StoreMembershipOutlier(ctx, pdu)
}
