package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"
)

// The strict other-implementation side of the test peer (fedpeer_test.go):
// what Hearth looks like to a foreign server that records everything,
// countersigns its users' invites, and refuses events of rooms it has no
// joined member in, as Dendrite does.

// strict is the peer's state as a strict foreign server, guarded by
// fedPeer.mu.
type strict struct {
	isStrict     bool
	serverAnswer peerAnswer // how /send and /invite answer
	requests     []peerRequest
	refused      []peerRefusal
	invites      map[string]gomatrixserverlib.PDU   // room ID → the invite it countersigned
	authChains   map[string][]gomatrixserverlib.PDU // event ID → what /event_auth answers
}

// peerRequest is one request the daemon made to the peer.
type peerRequest struct {
	Method, Path string
	Raw          []byte // the body as sent
	Body         any    // the body decoded as JSON, nil if it is not JSON
}

// peerRefusal is a PDU the strict peer refused.
type peerRefusal struct {
	RoomID, EventID, Type string
}

// record wraps the peer's routes so that every request is kept.
func (p *fedPeer) record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(io.LimitReader(r.Body, 16<<20))
		r.Body = io.NopCloser(bytes.NewReader(raw))
		var body any
		if json.Unmarshal(raw, &body) != nil {
			body = nil
		}
		p.mu.Lock()
		p.requests = append(p.requests, peerRequest{Method: r.Method, Path: r.URL.Path, Raw: raw, Body: body})
		p.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

// serverCall answers /send and /invite as setServerAnswer says.
func (p *fedPeer) serverCall(real http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		a := p.serverAnswer
		p.mu.Unlock()
		p.misbehave(w, r, a, real)
	}
}

// setStrict turns refusing PDUs of rooms without a joined member on or off.
func (p *fedPeer) setStrict(on bool) {
	p.mu.Lock()
	p.isStrict = on
	p.mu.Unlock()
}

// setServerAnswer sets how /send and /invite answer from now on
// (answerReal, answerRefuse or answerHang).
func (p *fedPeer) setServerAnswer(a peerAnswer) {
	p.mu.Lock()
	p.serverAnswer = a
	p.mu.Unlock()
}

// refuse records a refused PDU and returns its event ID; called with
// p.mu held.
func (p *fedPeer) refuse(roomID string, raw []byte) string {
	version := gomatrixserverlib.RoomVersionV10
	if rm := p.rooms[roomID]; rm != nil {
		version = rm.version
	} else if inv := p.invites[roomID]; inv != nil {
		version = inv.Version()
	}
	id := gjson.GetBytes(raw, "event_id").String()
	if ver, err := gomatrixserverlib.GetRoomVersion(version); err == nil {
		if pdu, err := ver.NewEventFromUntrustedJSON(raw); err == nil {
			id = pdu.EventID()
		}
	}
	p.refused = append(p.refused, peerRefusal{RoomID: roomID, EventID: id, Type: gjson.GetBytes(raw, "type").String()})
	return id
}

// invite is PUT /_matrix/federation/v2/invite: the peer countersigns an
// invite of one of its users and keeps it (Server-Server API §"Inviting
// to a room").
func (p *fedPeer) invite(w http.ResponseWriter, r *http.Request) {
	var body struct {
		RoomVersion gomatrixserverlib.RoomVersion `json:"room_version"`
		Event       json.RawMessage               `json:"event"`
	}
	fail := func(code int, errcode, msg string) {
		writePeerJSON(w, code, map[string]string{"errcode": errcode, "error": msg})
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		fail(http.StatusBadRequest, "M_NOT_JSON", err.Error())
		return
	}
	ver, err := gomatrixserverlib.GetRoomVersion(body.RoomVersion)
	if err != nil {
		fail(http.StatusBadRequest, "M_INCOMPATIBLE_ROOM_VERSION", err.Error())
		return
	}
	pdu, err := ver.NewEventFromUntrustedJSON(body.Event)
	if err != nil {
		fail(http.StatusBadRequest, "M_BAD_JSON", err.Error())
		return
	}
	m, _ := pdu.Membership()
	if sk := pdu.StateKey(); pdu.Type() != spec.MRoomMember || m != spec.Invite || sk == nil ||
		!strings.HasSuffix(*sk, ":"+string(p.Name)) || pdu.RoomID().String() != r.PathValue("roomID") {
		fail(http.StatusBadRequest, "M_BAD_JSON", "not an invite of a user of this server")
		return
	}
	signed, err := ver.NewEventFromTrustedJSON(pdu.Sign(string(p.Name), p.keyID, p.key).JSON(), false)
	if err != nil {
		fail(http.StatusInternalServerError, "M_UNKNOWN", err.Error())
		return
	}
	signed.EventID()
	p.mu.Lock()
	if p.invites == nil {
		p.invites = map[string]gomatrixserverlib.PDU{}
	}
	p.invites[pdu.RoomID().String()] = signed
	p.mu.Unlock()
	writePeerJSON(w, http.StatusOK, fclient.RespInviteV2{Event: signed.JSON()})
}

// joined reports whether a user of server is joined in the peer's copy of
// the room's state.
func (rm *peerRoom) joined(server spec.ServerName) bool {
	for k, pdu := range rm.state {
		typ, sk, _ := strings.Cut(k, "\x00")
		if typ != spec.MRoomMember || !strings.HasSuffix(sk, ":"+string(server)) {
			continue
		}
		if m, _ := pdu.Membership(); m == spec.Join {
			return true
		}
	}
	return false
}

// requestsTo lists the recorded requests whose path starts with prefix.
func (p *fedPeer) requestsTo(prefix string) []peerRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []peerRequest
	for _, r := range p.requests {
		if strings.HasPrefix(r.Path, prefix) {
			out = append(out, r)
		}
	}
	return out
}

// sentPDUs lists the PDUs of roomID the daemon sent in /send, refused or
// not, in the order they came.
func (p *fedPeer) sentPDUs(roomID string) []gjson.Result {
	return p.sent("pdus", func(pdu gjson.Result) bool { return pdu.Get("room_id").String() == roomID })
}

// sentEDUs lists the EDUs about roomID the daemon sent in /send: typing
// (content.room_id) and receipts (keyed by room ID).
func (p *fedPeer) sentEDUs(roomID string) []gjson.Result {
	return p.sent("edus", func(edu gjson.Result) bool {
		c := edu.Get("content")
		return c.Get("room_id").String() == roomID || c.Get(gjson.Escape(roomID)).Exists()
	})
}

// sent lists the entries of field (pdus or edus) of the daemon's /send
// requests that match, in the order they came.
func (p *fedPeer) sent(field string, match func(gjson.Result) bool) []gjson.Result {
	var out []gjson.Result
	for _, r := range p.requestsTo("/_matrix/federation/v1/send/") {
		for _, e := range gjson.GetBytes(r.Raw, field).Array() {
			if match(e) {
				out = append(out, e)
			}
		}
	}
	return out
}

// refusals lists the PDUs the strict peer refused.
func (p *fedPeer) refusals() []peerRefusal {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]peerRefusal(nil), p.refused...)
}

// invited is the invite of roomID the peer countersigned, or nil.
func (p *fedPeer) invited(roomID string) gomatrixserverlib.PDU {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.invites[roomID]
}

// serveAuthChain makes /event_auth answer for eventID with pdus (answerReal);
// events without one get 404.
func (p *fedPeer) serveAuthChain(eventID string, pdus ...gomatrixserverlib.PDU) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.authChains == nil {
		p.authChains = map[string][]gomatrixserverlib.PDU{}
	}
	p.authChains[eventID] = pdus
}

// eventAuth is GET /event_auth/{roomID}/{eventID}, as serveAuthChain set it.
func (p *fedPeer) eventAuth(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	chain, ok := p.authChains[r.PathValue("eventID")]
	p.mu.Unlock()
	if !ok {
		notFound(w, r)
		return
	}
	writePeerJSON(w, http.StatusOK, fclient.RespEventAuth{AuthEvents: gomatrixserverlib.NewEventJSONsFromEvents(chain)})
}
