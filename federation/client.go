package federation

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/matrix-org/gomatrix"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// What local users' actions need from other servers. The client API
// reaches these through a small interface of its own.

// ResolveAlias asks the alias's server which room it names
// (GET /query/directory).
func (s *Service) ResolveAlias(ctx context.Context, alias string) (string, []string, error) {
	server := serverOf(alias)
	res, err := s.cfg.Client.LookupRoomAlias(ctx, s.cfg.ServerName, spec.ServerName(server), alias)
	if err != nil {
		return "", nil, remoteError(server, err)
	}
	servers := make([]string, 0, len(res.Servers))
	for _, srv := range res.Servers {
		servers = append(servers, string(srv))
	}
	return res.RoomID, servers, nil
}

// JoinRoom joins a local user to a room this server is not in, through
// the first of the via servers that lets it (make_join, send_join; the
// answer is checked by gomatrixserverlib and stored by the room engine).
func (s *Service) JoinRoom(ctx context.Context, userID, roomID string, via []string, content map[string]any) error {
	uid, err := spec.NewUserID(userID, true)
	if err != nil {
		return matrixerr.InvalidParam("invalid user ID")
	}
	rid, err := spec.NewRoomID(roomID)
	if err != nil {
		return matrixerr.InvalidParam("invalid room ID")
	}
	if len(via) == 0 {
		return matrixerr.NotFound("no server to join the room through: give via or a room alias")
	}
	// The resident server may send the room's events before send_join's
	// answer is stored: hold them until it is (joining.go).
	s.joining.begin(roomID)
	joined := false
	defer func() {
		if !joined {
			s.joining.end(roomID, false)
		}
	}()
	var last error
	for _, server := range via {
		if server == string(s.cfg.ServerName) {
			continue
		}
		if last = s.joinVia(ctx, uid, rid, spec.ServerName(server), content); last == nil {
			joined = true
			s.receiveHeld(ctx, s.joining.end(roomID, true))
			return nil
		}
		slog.Info("federation: join failed", "room", roomID, "via", server, "err", last)
	}
	if last == nil {
		last = matrixerr.NotFound("no other server to join the room through")
	}
	var me *matrixerr.Error
	if errors.As(last, &me) && (me.Code == "M_UNABLE_TO_AUTHORISE_JOIN" || me.Code == "M_UNABLE_TO_GRANT_JOIN") {
		// No resident server could vouch for a restricted join: for the
		// client that is a refused join (Client-Server API /join: 403),
		// with the resident server's errcode passed through.
		return &matrixerr.Error{Status: http.StatusForbidden, Code: me.Code, Message: me.Message}
	}
	return last
}

func (s *Service) joinVia(ctx context.Context, uid *spec.UserID, rid *spec.RoomID, server spec.ServerName, content map[string]any) error {
	jc := joinClient{c: s.cfg.Client, sending: func(ver gomatrixserverlib.RoomVersion) { s.joining.sendingJoin(rid.String(), ver) }}
	res, ferr := gomatrixserverlib.PerformJoin(ctx, jc, gomatrixserverlib.PerformJoinInput{
		UserID: uid, RoomID: rid, ServerName: server, Content: content,
		PrivateKey: s.cfg.Key, KeyID: s.cfg.KeyID, KeyRing: s.cfg.KeyRing,
		EventProvider: func(ver gomatrixserverlib.RoomVersion, ids []string) ([]gomatrixserverlib.PDU, error) {
			return s.fetchEvents(ctx, server, ver, ids)
		},
		UserIDQuerier: userIDForSender,
		GetOrCreateSenderID: func(_ context.Context, u spec.UserID, _ spec.RoomID, _ string) (spec.SenderID, ed25519.PrivateKey, error) {
			return spec.SenderIDFromUserID(u), nil, nil
		},
		StoreSenderIDFromPublicID: func(context.Context, spec.SenderID, string, spec.RoomID) error { return nil },
	})
	if ferr != nil {
		return remoteError(string(server), ferr.Err)
	}
	ver := res.JoinEvent.Version()
	join, err := gomatrixserverlib.MustGetRoomVersion(ver).NewEventFromTrustedJSON(res.JoinEvent.JSON(), false)
	if err != nil {
		return err
	}
	// gomatrixserverlib takes the resident server's copy of the join as
	// it is. A restricted join must carry the signature of the server of
	// the user who authorised it (Server-Server API §"Restricted rooms"),
	// and ours must still cover what it returned.
	if err := gomatrixserverlib.VerifyEventSignatures(ctx, join, s.cfg.KeyRing, userIDForSender); err != nil {
		return matrixerr.Unknown(fmt.Sprintf("%s returned a join without the signatures it needs: %v", server, err)).WithStatus(http.StatusBadGateway)
	}
	state := res.StateSnapshot.GetStateEvents().UntrustedEvents(ver)
	auth := res.StateSnapshot.GetAuthEvents().UntrustedEvents(ver)
	return s.cfg.Rooms.JoinRemote(ctx, join, state, auth)
}

// fetchEvents gets events by ID from a server (/event), checking each.
func (s *Service) fetchEvents(ctx context.Context, server spec.ServerName, ver gomatrixserverlib.RoomVersion, ids []string) ([]gomatrixserverlib.PDU, error) {
	verImpl, err := gomatrixserverlib.GetRoomVersion(ver)
	if err != nil {
		return nil, err
	}
	var out []gomatrixserverlib.PDU
	for _, id := range ids {
		txn, err := s.cfg.Client.GetEvent(ctx, s.cfg.ServerName, server, id)
		if err != nil || len(txn.PDUs) != 1 {
			continue
		}
		p, err := verImpl.NewEventFromUntrustedJSON(txn.PDUs[0])
		if err != nil || p.EventID() != id {
			continue
		}
		if gomatrixserverlib.VerifyEventSignatures(ctx, p, s.cfg.KeyRing, userIDForSender) == nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// receiveHeld hands the PDUs held while the join was in flight to the
// receipt path, in the order they arrived, now that the room's state is
// stored. Events the join's answer already held (its state and auth
// chain) are known by now, and the room engine takes a known event ID as
// done. The client's request may end meanwhile; the events are ours to
// store anyway, within the receipt path's own bounds.
func (s *Service) receiveHeld(ctx context.Context, held []heldPDU) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	for len(held) > 0 {
		// One batch per run of the same origin, at most a transaction's
		// worth, so order is kept and each origin is checked as itself.
		n := 1
		for n < len(held) && n < maxPDUs && held[n].origin == held[0].origin {
			n++
		}
		raws := make([]json.RawMessage, n)
		for i := range n {
			raws[i] = held[i].raw
		}
		results, _ := s.receivePDUs(ctx, held[0].origin, raws, nil, nil)
		for id, err := range results {
			if err != nil {
				slog.Info("federation: PDU held for a join refused", "origin", held[0].origin, "event_id", id, "err", err)
			}
		}
		held = held[n:]
	}
}

// joinClient adapts fclient's concrete responses to gomatrixserverlib's
// join interfaces (gomatrixserverlib notes §9); sending is told the
// room's version as send_join goes out.
type joinClient struct {
	c       fclient.FederationClient
	sending func(gomatrixserverlib.RoomVersion)
}

func (j joinClient) MakeJoin(ctx context.Context, origin, s spec.ServerName, roomID, userID string) (gomatrixserverlib.MakeJoinResponse, error) {
	res, err := j.c.MakeJoin(ctx, origin, s, roomID, userID)
	if err != nil {
		return nil, err
	}
	return &res, nil
}

func (j joinClient) SendJoin(ctx context.Context, origin, s spec.ServerName, event gomatrixserverlib.PDU) (gomatrixserverlib.SendJoinResponse, error) {
	j.sending(event.Version())
	res, err := j.c.SendJoin(ctx, origin, s, event)
	if err != nil {
		return nil, err
	}
	return &res, nil
}

// remoteError turns another server's failure into the client's error: its
// Matrix error when it sent one, else 502-like M_UNKNOWN with the reason.
func remoteError(server string, err error) error {
	var me *matrixerr.Error
	if errors.As(err, &me) {
		return me
	}
	var he gomatrix.HTTPError
	if errors.As(err, &he) && he.Code >= 400 && he.Code < 500 {
		var re gomatrix.RespError
		if errors.As(he.WrappedError, &re) && re.ErrCode != "" {
			return &matrixerr.Error{Status: he.Code, Code: re.ErrCode, Message: server + ": " + re.Err}
		}
	}
	return matrixerr.Unknown(fmt.Sprintf("could not reach %s: %v", server, err)).WithStatus(502)
}
