package federation

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

// Invites across servers (Server-Server API §"Inviting to a room").

// invite is PUT /_matrix/federation/v2/invite/{roomId}/{eventId}: another
// server asks this one to countersign an invite of a local user.
func (s *Service) invite(w http.ResponseWriter, r *request) error {
	var body struct {
		RoomVersion     gomatrixserverlib.RoomVersion `json:"room_version"`
		Event           json.RawMessage               `json:"event"`
		InviteRoomState []json.RawMessage             `json:"invite_room_state"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil {
		return matrixerr.NotJSON("body is not valid JSON")
	}
	ver, err := gomatrixserverlib.GetRoomVersion(body.RoomVersion)
	if err != nil {
		matrixerr.WriteJSON(w, http.StatusBadRequest, map[string]any{"errcode": "M_INCOMPATIBLE_ROOM_VERSION",
			"error": "unsupported room version", "room_version": body.RoomVersion})
		return nil
	}
	roomID, err := spec.NewRoomID(r.PathValue("roomID"))
	if err != nil {
		return matrixerr.InvalidParam("invalid room ID")
	}
	pdu, err := parseUntrusted(ver.Version(), roomID.String(), body.Event)
	if err != nil || pdu == nil || pdu.EventID() != r.PathValue("eventID") {
		return matrixerr.BadJSON("invalid invite event")
	}
	// gomatrixserverlib checks the inviter's signature but not these.
	m, _ := pdu.Membership()
	invitee := pdu.StateKey()
	if pdu.Type() != spec.MRoomMember || m != spec.Invite || invitee == nil || serverOf(*invitee) != string(s.cfg.ServerName) {
		return matrixerr.BadJSON("not an invite of a user of this server")
	}
	if serverOf(string(pdu.SenderID())) != string(r.origin) {
		return matrixerr.Forbidden("the invite was not sent by the inviter's server")
	}
	if _, err := s.localUser(*invitee); err != nil {
		return err
	}
	if err := s.inviteAllowed(*invitee, string(pdu.SenderID())); err != nil {
		return err
	}
	if s.strangerInvitesFull(r.origin, roomID.String(), *invitee) {
		return matrixerr.Forbidden("too many unanswered invites from a server that shares no room with this one")
	}
	user, _ := spec.NewUserID(*invitee, true)
	var stripped []gomatrixserverlib.InviteStrippedState
	for _, raw := range body.InviteRoomState {
		var st gomatrixserverlib.InviteStrippedState
		if json.Unmarshal(raw, &st) == nil {
			stripped = append(stripped, st)
		}
	}
	signed, err := gomatrixserverlib.HandleInvite(r.Context(), gomatrixserverlib.HandleInviteInput{
		RoomID: *roomID, RoomVersion: ver.Version(), InvitedUser: *user, InvitedSenderID: spec.SenderID(user.String()),
		InviteEvent: pdu, StrippedState: stripped, KeyID: s.cfg.KeyID, PrivateKey: s.cfg.Key,
		Verifier: s.cfg.KeyRing, RoomQuerier: querier{s}, MembershipQuerier: querier{s}, StateQuerier: querier{s},
		UserIDQuerier: userIDForSender,
	})
	if err != nil {
		return gmslError(err)
	}
	// Sign returned the embedded v2 event (gomatrixserverlib notes §2).
	signed, err = ver.NewEventFromTrustedJSON(signed.JSON(), false)
	if err == nil {
		err = keepRoomState(signed, "invite_room_state", body.InviteRoomState)
	}
	if err == nil {
		err = s.storeInvite(r.Context(), signed)
	}
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, fclient.RespInviteV2{Event: signed.JSON()})
	return nil
}

// inviteAllowed refuses with 403 M_INVITE_BLOCKED an invite the local
// invitee's invite permission config blocks (MSC4155; spec v1.18
// §"Invite permission"), so the inviting server reports it to its user.
// An ignored invite is countersigned and kept like any other: /sync
// hides it.
func (s *Service) inviteAllowed(invitee, inviter string) error {
	rules, err := s.cfg.Accounts.InviteRules(s.cfg.Accounts.Localpart(invitee))
	if err != nil {
		return err
	}
	if rules.Action(inviter) == account.InviteBlock {
		return matrixerr.InviteBlocked(invitee + " does not accept invites from " + inviter)
	}
	return nil
}

// strangerPendingInvites caps the unanswered invites a server that shares
// no room with this one can leave with its users (issue 10): invites are
// stored and shown to the owner, so a stranger must not be able to pile
// them up. A server sharing a room is not capped; a stranger can invite
// again once its invites were answered.
const strangerPendingInvites = 10

// strangerInvitesFull reports whether origin shares no room with this
// server and already has strangerPendingInvites invites of local users
// pending (not counting one for the same room and invitee, which a retry
// replaces).
func (s *Service) strangerInvitesFull(origin spec.ServerName, roomID, invitee string) bool {
	if slices.Contains(s.cfg.Rooms.ServersSharingRooms(), string(origin)) {
		return false
	}
	users, err := s.cfg.Accounts.List()
	if err != nil {
		return false // cannot count: the cap is a guard, not an access check
	}
	pending := 0
	for _, u := range users {
		userID := "@" + u.Localpart + ":" + string(s.cfg.ServerName)
		ms, err := s.cfg.Rooms.Memberships(userID)
		if err != nil {
			continue
		}
		for _, m := range ms {
			if m.Membership != spec.Invite || (m.RoomID == roomID && userID == invitee) {
				continue
			}
			if ev := s.cfg.Rooms.CurrentStatePDU(m.RoomID, spec.MRoomMember, userID); ev != nil && serverOf(string(ev.SenderID())) == string(origin) {
				if pending++; pending >= strangerPendingInvites {
					return true
				}
			}
		}
	}
	return false
}

// storeInvite appends the invite to a room a local user is in, or keeps
// it as the invitee's membership of a room this server is not in.
func (s *Service) storeInvite(ctx context.Context, pdu gomatrixserverlib.PDU) error {
	if s.cfg.Rooms.HasLocalJoined(pdu.RoomID().String()) {
		if err := s.ingest(ctx, spec.ServerName(serverOf(string(pdu.SenderID()))), pdu, 0); err == nil {
			return nil
		}
	}
	return s.cfg.Rooms.StoreMembershipOutlier(ctx, pdu)
}

// Invite invites a user of another server: the invite is built here,
// countersigned by the invitee's server, and appended (and so sent to the
// rest of the room).
func (s *Service) Invite(ctx context.Context, req room.MembershipRequest) (string, error) {
	pdu, stripped, err := s.cfg.Rooms.PrepareInvite(req)
	if err != nil {
		return "", err
	}
	server := serverOf(req.Target)
	res, err := s.sendInviteV2(ctx, server, pdu, stripped)
	if err != nil {
		return "", remoteError(server, err)
	}
	signed, err := parseUntrusted(pdu.Version(), req.RoomID, res.Event)
	if err != nil || signed == nil || signed.EventID() != pdu.EventID() {
		return "", matrixerr.Unknown(server + " answered the invite with another event").WithStatus(http.StatusBadGateway)
	}
	if err := gomatrixserverlib.VerifyEventSignatures(ctx, signed, s.cfg.KeyRing, userIDForSender); err != nil {
		return "", matrixerr.Unknown(server + " did not sign the invite: " + err.Error()).WithStatus(http.StatusBadGateway)
	}
	if err := s.cfg.Rooms.Ingest(ctx, signed, room.IngestOptions{}); err != nil {
		return "", forbiddenIfRejected(err)
	}
	return signed.EventID(), nil
}

// LeaveRoom makes a local user leave a room this server is not in (a
// declined invite) through the inviting server: make_leave, send_leave.
func (s *Service) LeaveRoom(ctx context.Context, userID, roomID string, via []string) error {
	var last error = matrixerr.NotFound("no server to leave the room through")
	for _, server := range via {
		if server == string(s.cfg.ServerName) || server == "" {
			continue
		}
		if last = s.leaveVia(ctx, userID, roomID, spec.ServerName(server)); last == nil {
			return nil
		}
	}
	return last
}

func (s *Service) leaveVia(ctx context.Context, userID, roomID string, server spec.ServerName) error {
	res, err := s.cfg.Client.MakeLeave(ctx, s.cfg.ServerName, server, roomID, userID)
	if err != nil {
		return remoteError(string(server), err)
	}
	ver, err := gomatrixserverlib.GetRoomVersion(res.RoomVersion)
	if err != nil {
		return err
	}
	proto := res.LeaveEvent
	if proto.SenderID != userID || proto.Type != spec.MRoomMember || proto.StateKey == nil || *proto.StateKey != userID {
		return errors.New("make_leave answered with a template for another event")
	}
	if err := proto.SetContent(map[string]any{"membership": spec.Leave}); err != nil {
		return err
	}
	eb := ver.NewEventBuilderFromProtoEvent(&proto)
	pdu, err := eb.Build(s.now(), s.cfg.ServerName, s.cfg.KeyID, s.cfg.Key)
	if err != nil {
		return err
	}
	if err := s.cfg.Client.SendLeave(ctx, s.cfg.ServerName, server, pdu); err != nil {
		return remoteError(string(server), err)
	}
	return s.cfg.Rooms.StoreMembershipOutlier(ctx, pdu)
}

// GetAuthEvents and GetState make querier a gomatrixserverlib.StateQuerier
// for HandleInvite, over the room's current state.
func (q querier) GetAuthEvents(_ context.Context, event gomatrixserverlib.PDU) (gomatrixserverlib.AuthEventProvider, error) {
	needed := gomatrixserverlib.StateNeededForAuth([]gomatrixserverlib.PDU{event})
	var pdus []gomatrixserverlib.PDU
	for _, t := range needed.Tuples() {
		if p := q.s.cfg.Rooms.CurrentStatePDU(event.RoomID().String(), t.EventType, t.StateKey); p != nil {
			pdus = append(pdus, p)
		}
	}
	return gomatrixserverlib.NewAuthEvents(pdus)
}

func (q querier) GetState(_ context.Context, roomID spec.RoomID, wanted []gomatrixserverlib.StateKeyTuple) ([]gomatrixserverlib.PDU, error) {
	var out []gomatrixserverlib.PDU
	for _, t := range wanted {
		if p := q.s.cfg.Rooms.CurrentStatePDU(roomID.String(), t.EventType, t.StateKey); p != nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// IsKnownRoom makes querier a gomatrixserverlib.RoomQuerier: a room is
// known when a local user is in it.
func (q querier) IsKnownRoom(_ context.Context, roomID spec.RoomID) (bool, error) {
	return q.s.cfg.Rooms.HasLocalJoined(roomID.String()), nil
}
