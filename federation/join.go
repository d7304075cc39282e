package federation

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

// Joining and leaving through this server (Server-Server API §"Joining
// Rooms", §"Leaving Rooms"): the remote server asks for a template
// (make_*), signs the completed event and sends it back (send_*); this
// server checks it, appends it and relays it to the rest of the room.

func (s *Service) makeJoin(w http.ResponseWriter, r *request) error {
	roomID, userID, version, err := s.membershipPath(r)
	if err != nil {
		return err
	}
	var remote []gomatrixserverlib.RoomVersion
	for _, v := range r.URL.Query()["ver"] {
		remote = append(remote, gomatrixserverlib.RoomVersion(v))
	}
	if len(remote) == 0 {
		remote = []gomatrixserverlib.RoomVersion{gomatrixserverlib.RoomVersionV1} // the spec's default
	}
	res, err := gomatrixserverlib.HandleMakeJoin(gomatrixserverlib.HandleMakeJoinInput{
		Context: r.Context(), UserID: *userID, SenderID: spec.SenderID(userID.String()), RoomID: *roomID,
		RoomVersion: version, RemoteVersions: remote, RequestOrigin: r.origin, LocalServerName: s.cfg.ServerName,
		LocalServerInRoom: len(s.cfg.Rooms.LocalJoinedMembers(roomID.String())) > 0,
		RoomQuerier:       restrictedDecidedHere{}, UserIDQuerier: userIDForSender,
		BuildEventTemplate: func(proto *gomatrixserverlib.ProtoEvent) (gomatrixserverlib.PDU, []gomatrixserverlib.PDU, error) {
			// Restricted rooms: the room engine decides (its errors tell
			// the joining server whether to try another resident server)
			// and names the authorising user in the template's content.
			via, err := s.cfg.Rooms.JoinAuthoriser(roomID.String(), userID.String())
			if err != nil {
				return nil, nil, err
			}
			if via != "" {
				if err := proto.SetContent(gomatrixserverlib.MemberContent{Membership: spec.Join, AuthorisedVia: via}); err != nil {
					return nil, nil, err
				}
			}
			return s.cfg.Rooms.Template(proto)
		},
	})
	if err != nil {
		return gmslError(err)
	}
	matrixerr.WriteJSON(w, http.StatusOK, fclient.RespMakeJoin{JoinEvent: res.JoinTemplateEvent, RoomVersion: res.RoomVersion})
	return nil
}

func (s *Service) makeLeave(w http.ResponseWriter, r *request) error {
	roomID, userID, version, err := s.membershipPath(r)
	if err != nil {
		return err
	}
	res, err := gomatrixserverlib.HandleMakeLeave(gomatrixserverlib.HandleMakeLeaveInput{
		UserID: *userID, SenderID: spec.SenderID(userID.String()), RoomID: *roomID, RoomVersion: version,
		RequestOrigin: r.origin, LocalServerName: s.cfg.ServerName, LocalServerInRoom: len(s.cfg.Rooms.LocalJoinedMembers(roomID.String())) > 0,
		UserIDQuerier: userIDForSender, BuildEventTemplate: s.cfg.Rooms.Template,
	})
	if err != nil {
		return gmslError(err)
	}
	matrixerr.WriteJSON(w, http.StatusOK, fclient.RespMakeLeave{LeaveEvent: res.LeaveTemplateEvent, RoomVersion: version})
	return nil
}

// membershipPath parses {roomID}/{userID} of make_join and make_leave.
func (s *Service) membershipPath(r *request) (*spec.RoomID, *spec.UserID, gomatrixserverlib.RoomVersion, error) {
	roomID, err := spec.NewRoomID(r.PathValue("roomID"))
	if err != nil {
		return nil, nil, "", matrixerr.InvalidParam("invalid room ID")
	}
	userID, err := spec.NewUserID(r.PathValue("userID"), true)
	if err != nil {
		return nil, nil, "", matrixerr.InvalidParam("invalid user ID")
	}
	version, err := s.cfg.Rooms.RoomVersion(roomID.String())
	if err != nil {
		return nil, nil, "", matrixerr.NotFound("this server is not in the room")
	}
	return roomID, userID, version, nil
}

// sendJoin is send_join v2: the join is checked by gomatrixserverlib
// (sender, origin signature, not banned), countersigned, authorised
// against the room's state here and appended; the answer is the state
// before it and its auth chain.
func (s *Service) sendJoin(w http.ResponseWriter, r *request) error {
	resp, err := s.acceptJoin(r)
	if err != nil {
		return gmslError(err)
	}
	matrixerr.WriteJSON(w, http.StatusOK, resp)
	return nil
}

// sendJoinV1 answers in the deprecated [200, {...}] form.
func (s *Service) sendJoinV1(w http.ResponseWriter, r *request) error {
	resp, err := s.acceptJoin(r)
	if err != nil {
		return gmslError(err)
	}
	matrixerr.WriteJSON(w, http.StatusOK, []any{200, resp})
	return nil
}

func (s *Service) acceptJoin(r *request) (*fclient.RespSendJoin, error) {
	roomID, err := spec.NewRoomID(r.PathValue("roomID"))
	if err != nil {
		return nil, matrixerr.InvalidParam("invalid room ID")
	}
	version, err := s.cfg.Rooms.RoomVersion(roomID.String())
	if err != nil {
		return nil, matrixerr.NotFound("this server is not in the room")
	}
	res, err := gomatrixserverlib.HandleSendJoin(gomatrixserverlib.HandleSendJoinInput{
		Context: r.Context(), RoomID: *roomID, EventID: r.PathValue("eventID"), JoinEvent: r.body,
		RoomVersion: version, RequestOrigin: r.origin, LocalServerName: s.cfg.ServerName,
		KeyID: s.cfg.KeyID, PrivateKey: s.cfg.Key, Verifier: s.cfg.KeyRing, MembershipQuerier: querier{s},
		UserIDQuerier:             userIDForSender,
		StoreSenderIDFromPublicID: func(context.Context, spec.SenderID, string, spec.RoomID) error { return nil },
	})
	if err != nil {
		return nil, err
	}
	// Sign returned the embedded v2 event, which loses v12's create-event
	// handling (gomatrixserverlib notes §2): parse it again.
	join, err := gomatrixserverlib.MustGetRoomVersion(version).NewEventFromTrustedJSON(res.JoinEvent.JSON(), false)
	if err != nil {
		return nil, err
	}
	if err := s.checkAuthorisedJoin(roomID.String(), join); err != nil {
		return nil, err
	}
	if !res.AlreadyJoined {
		if err := s.cfg.Rooms.Ingest(r.Context(), join, room.IngestOptions{Relay: true}); err != nil {
			return nil, forbiddenIfRejected(err)
		}
	}
	state, chain, err := s.cfg.Rooms.StateBefore(roomID.String(), join.EventID())
	if err != nil {
		return nil, err
	}
	servers, _ := s.cfg.Rooms.JoinedServers(roomID.String())
	resp := &fclient.RespSendJoin{StateEvents: gomatrixserverlib.NewEventJSONsFromEvents(state),
		AuthEvents: gomatrixserverlib.NewEventJSONsFromEvents(chain), Origin: s.cfg.ServerName, Event: join.JSON()}
	resp.ServersInRoom = append(resp.ServersInRoom, servers...)
	return resp, nil
}

// checkAuthorisedJoin refuses a join that names one of this server's
// users as its authoriser (join_authorised_via_users_server) when the
// joining user does not meet the room's allow conditions as this server
// sees them: the countersignature would otherwise vouch for a join that
// make_join would have refused (Server-Server API §"Restricted rooms").
func (s *Service) checkAuthorisedJoin(roomID string, join gomatrixserverlib.PDU) error {
	var c struct {
		Via string `json:"join_authorised_via_users_server"`
	}
	if json.Unmarshal(join.Content(), &c) != nil || c.Via == "" {
		return nil
	}
	_, err := s.cfg.Rooms.JoinAuthoriser(roomID, string(join.SenderID()))
	return err
}

// restrictedDecidedHere stands in for gomatrixserverlib's restricted-join
// check in HandleMakeJoin, which would pick the authoriser among the
// members of the allowed room rather than of the room being joined and
// answers M_FORBIDDEN where the spec wants M_UNABLE_TO_GRANT_JOIN: with no
// join rule to read, that check passes, and the template callback asks the
// room engine instead.
type restrictedDecidedHere struct{}

func (restrictedDecidedHere) CurrentStateEvent(context.Context, spec.RoomID, string, string) (gomatrixserverlib.PDU, error) {
	return nil, nil
}

func (restrictedDecidedHere) InvitePending(context.Context, spec.RoomID, spec.SenderID) (bool, error) {
	return false, nil
}

func (restrictedDecidedHere) RestrictedRoomJoinInfo(context.Context, spec.RoomID, spec.SenderID, spec.ServerName) (*gomatrixserverlib.RestrictedRoomJoinInfo, error) {
	return nil, nil
}

// sendLeave is send_leave v2. gomatrixserverlib has no handler for it
// (notes §9): the checks are here, the auth rules in the room engine.
func (s *Service) sendLeave(w http.ResponseWriter, r *request) error {
	if err := s.acceptLeave(r); err != nil {
		return gmslError(err)
	}
	matrixerr.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

func (s *Service) sendLeaveV1(w http.ResponseWriter, r *request) error {
	if err := s.acceptLeave(r); err != nil {
		return gmslError(err)
	}
	matrixerr.WriteJSON(w, http.StatusOK, []any{200, struct{}{}})
	return nil
}

func (s *Service) acceptLeave(r *request) error {
	roomID := r.PathValue("roomID")
	version, err := s.cfg.Rooms.RoomVersion(roomID)
	if err != nil {
		return matrixerr.NotFound("this server is not in the room")
	}
	pdu, err := parseUntrusted(version, roomID, r.body)
	if err != nil || pdu == nil {
		return matrixerr.BadJSON("invalid leave event")
	}
	if pdu.EventID() != r.PathValue("eventID") {
		return matrixerr.BadJSON("event ID does not match the path")
	}
	m, err := pdu.Membership()
	if err != nil || m != spec.Leave || pdu.Type() != spec.MRoomMember || !pdu.StateKeyEquals(string(pdu.SenderID())) {
		return matrixerr.BadJSON("not a leave event of its sender")
	}
	if serverOf(string(pdu.SenderID())) != string(r.origin) {
		return matrixerr.Forbidden("the leave was not sent by its sender's server")
	}
	if err := gomatrixserverlib.VerifyEventSignatures(r.Context(), pdu, s.cfg.KeyRing, userIDForSender); err != nil {
		return matrixerr.Forbidden("bad signature: " + err.Error())
	}
	return forbiddenIfRejected(s.cfg.Rooms.Ingest(r.Context(), pdu, room.IngestOptions{Relay: true}))
}

// forbiddenIfRejected turns an auth failure into 403 M_FORBIDDEN.
func forbiddenIfRejected(err error) error {
	var rej *room.RejectedError
	if errors.As(err, &rej) {
		return matrixerr.Forbidden(rej.Reason)
	}
	if _, ok := room.IsMissing(err); ok {
		return matrixerr.Forbidden("the event refers to events this server does not have")
	}
	return err
}

// gmslError turns the errors gomatrixserverlib's handlers return
// (spec.MatrixError and friends) into ours, for handle to write: the
// same status, errcode, message and, for an incompatible room version,
// room_version.
func gmslError(err error) error {
	switch e := err.(type) {
	case spec.MatrixError:
		return &matrixerr.Error{Status: httpStatus(e), Code: string(e.ErrCode), Message: e.Err}
	case spec.IncompatibleRoomVersionError:
		return &matrixerr.Error{Status: http.StatusBadRequest, Code: string(e.ErrCode), Message: e.Err,
			Extra: map[string]any{"room_version": e.RoomVersion}}
	case spec.InternalServerError:
		return errors.New(e.Error())
	}
	var me *matrixerr.Error
	if errors.As(err, &me) {
		return me
	}
	var na *gomatrixserverlib.NotAllowed
	if errors.As(err, &na) {
		return matrixerr.Forbidden(na.Message)
	}
	return err
}

func httpStatus(e spec.MatrixError) int {
	switch e.ErrCode {
	case spec.ErrorForbidden:
		return http.StatusForbidden
	case spec.ErrorNotFound:
		return http.StatusNotFound
	case spec.ErrorUnableToAuthoriseJoin, spec.ErrorBadJSON, spec.ErrorInvalidParam, spec.ErrorNotJSON:
		return http.StatusBadRequest
	}
	return http.StatusBadRequest
}

// querier answers gomatrixserverlib's questions about rooms.
type querier struct{ s *Service }

func (q querier) CurrentMembership(_ context.Context, roomID spec.RoomID, sender spec.SenderID) (string, error) {
	p := q.s.cfg.Rooms.CurrentStatePDU(roomID.String(), spec.MRoomMember, string(sender))
	if p == nil {
		return spec.Leave, nil
	}
	return p.Membership()
}
