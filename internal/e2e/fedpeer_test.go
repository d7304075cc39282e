package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"
)

// fedPeer is a federation peer written in the test with gomatrixserverlib:
// it serves its key and the callbacks a homeserver makes (answered as the
// test says: really, with garbage, or never), joins rooms through the
// daemon and sends it transactions of events it builds, signs (or
// forges) itself. It is what a hostile or broken server looks like from
// the daemon's side, over the same TLS and X-Matrix paths as a real one.
//
// It is also the strict other implementation of the interop tests
// (federation_interop_peer_test.go): it records every request the daemon makes
// (requests), countersigns invites of its users, and with setStrict
// refuses, as a strict server does, the PDUs of rooms it has no joined
// member in; setServerAnswer makes /send and /invite refuse or hang.
type fedPeer struct {
	t      *testing.T
	Name   spec.ServerName
	keyID  gomatrixserverlib.KeyID
	key    ed25519.PrivateKey
	hs     spec.ServerName // the daemon it talks to
	srv    *httptest.Server
	http   *http.Client // raw requests, matrix:// URLs
	client fclient.FederationClient
	stop   chan struct{} // closed at cleanup: hanging handlers return
	txns   atomic.Int64  // numbers transaction IDs

	mu     sync.Mutex
	answer peerAnswer
	calls  map[string]int // callback name → requests the daemon made
	rooms  map[string]*peerRoom
	// offered are events /event and /state answer for (offerStateAt):
	// the event, and the state before it.
	offered map[string]offeredEvent
	strict  // the strict foreign server's state (federation_interop_peer_test.go)
	hosting // the resident server's state (federation_joinqueue_test.go)
}

// peerAnswer is how the peer answers the daemon's callbacks.
type peerAnswer int

const (
	answerReal    peerAnswer = iota // the events it has, or 404
	answerGarbage                   // 200 with JSON that is not what was asked
	answerHang                      // never, until the request ends
	answerRefuse                    // 403 M_FORBIDDEN
)

// peerRoom is what the peer knows of a room it joined.
type peerRoom struct {
	version gomatrixserverlib.RoomVersion
	state   map[string]gomatrixserverlib.PDU // type + "\x00" + state_key
	latest  gomatrixserverlib.PDU
	// withheld are events built but not sent: get_missing_events
	// answers with them (answerReal).
	withheld []gomatrixserverlib.PDU
}

// addPeer adds a peer called name that talks to daemon hs; call it before
// the daemons start, so their static server tables list it.
func (n *fedNet) addPeer(name, hs string) *fedPeer {
	t := n.t
	t.Helper()
	certFile, keyFile := n.issue(name)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	noErr(t, err, "peer certificate")
	_, key, err := ed25519.GenerateKey(nil)
	noErr(t, err, "peer key")
	p := &fedPeer{t: t, Name: spec.ServerName(name), keyID: "ed25519:peer", key: key, hs: spec.ServerName(hs),
		stop: make(chan struct{}), calls: map[string]int{}, rooms: map[string]*peerRoom{},
		offered: map[string]offeredEvent{}}
	p.srv = httptest.NewUnstartedServer(p.record(p.routes()))
	p.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	p.srv.StartTLS()
	t.Cleanup(func() { close(p.stop); p.srv.Close() })

	// The daemons find the peer through their static table, as they
	// find each other.
	for _, d := range n.Daemons {
		for i, arg := range d.Extra {
			if arg == "--federation-servers" && i+1 < len(d.Extra) {
				d.Extra[i+1] += "," + name + "=" + p.srv.Listener.Addr().String()
			}
		}
	}
	roots := x509.NewCertPool()
	roots.AddCert(n.caCert)
	tr := &peerTransport{addrs: n.addrs, roots: roots, byName: map[string]*http.Transport{}}
	// The bound is far above the daemon's own (30 s per outbound call), so
	// a /send that does not return fails the test instead of timing out
	// on this side first.
	p.http = &http.Client{Transport: tr, Timeout: 3 * time.Minute}
	p.client = fclient.NewFederationClient([]*fclient.SigningIdentity{{ServerName: p.Name, KeyID: p.keyID, PrivateKey: key}},
		fclient.WithTransport(tr), fclient.WithTimeout(3*time.Minute))
	return p
}

// startWithPeer starts one daemon, hs1.test, with the test peer beside
// it; a strict peer refuses what a strict server refuses (setStrict).
func startWithPeer(t *testing.T, strict bool) (*fedPeer, *Daemon) {
	t.Helper()
	net := newFedNet(t, "hs1.test")
	peer := net.addPeer(peerName, "hs1.test")
	peer.setStrict(strict)
	hs1 := net.Daemons["hs1.test"]
	hs1.Start()
	return peer, hs1
}

// writePeerJSON writes v as the peer's JSON answer, with status code.
func writePeerJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// peerTransport sends matrix://name/... to the daemon called name, over
// TLS checked against the test CA.
type peerTransport struct {
	addrs  map[string]string
	roots  *x509.CertPool
	mu     sync.Mutex
	byName map[string]*http.Transport
}

func (pt *peerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	name := req.URL.Host
	addr, ok := pt.addrs[name]
	if !ok {
		return nil, fmt.Errorf("peer: no address for %q", name)
	}
	pt.mu.Lock()
	tr := pt.byName[name]
	if tr == nil {
		tr = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pt.roots, ServerName: name}}
		pt.byName[name] = tr
	}
	pt.mu.Unlock()
	out := req.Clone(req.Context())
	out.URL.Scheme, out.URL.Host, out.Host = "https", addr, name
	return tr.RoundTrip(out)
}

func (p *fedPeer) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_matrix/key/v2/server", p.serveKeys)
	mux.HandleFunc("GET /_matrix/key/v2/server/{keyID}", p.serveKeys)
	mux.HandleFunc("PUT /_matrix/federation/v1/send/{txnID}", p.serverCall(p.receive))
	mux.HandleFunc("PUT /_matrix/federation/v2/invite/{roomID}/{eventID}", p.serverCall(p.invite))
	mux.HandleFunc("POST /_matrix/federation/v1/get_missing_events/{roomID}", p.callback("get_missing_events", p.missingEvents))
	mux.HandleFunc("GET /_matrix/federation/v1/state/{roomID}", p.callback("state", p.serveState))
	mux.HandleFunc("GET /_matrix/federation/v1/state_ids/{roomID}", p.callback("state_ids", notFound))
	mux.HandleFunc("GET /_matrix/federation/v1/event/{eventID}", p.callback("event", p.serveEvent))
	mux.HandleFunc("GET /_matrix/federation/v1/event_auth/{roomID}/{eventID}", p.callback("event_auth", p.eventAuth))
	mux.HandleFunc("GET /_matrix/federation/v1/make_join/{roomID}/{userID}", p.callback("make_join", p.makeJoin))
	mux.HandleFunc("PUT /_matrix/federation/v2/send_join/{roomID}/{eventID}", p.callback("send_join", p.sendJoin))
	mux.HandleFunc("/", notFound)
	return mux
}

func notFound(w http.ResponseWriter, r *http.Request) {
	writePeerJSON(w, http.StatusNotFound, map[string]string{"errcode": "M_UNRECOGNIZED", "error": "test peer: not here"})
}

// serveKeys is GET /_matrix/key/v2/server: the peer's one key, self-signed
// (gomatrixserverlib notes §7 "Serving").
func (p *fedPeer) serveKeys(w http.ResponseWriter, r *http.Request) {
	fields := gomatrixserverlib.ServerKeyFields{ServerName: p.Name,
		VerifyKeys:    map[gomatrixserverlib.KeyID]gomatrixserverlib.VerifyKey{p.keyID: {Key: spec.Base64Bytes(p.key.Public().(ed25519.PublicKey))}},
		ValidUntilTS:  spec.AsTimestamp(time.Now().Add(time.Hour)),
		OldVerifyKeys: map[gomatrixserverlib.KeyID]gomatrixserverlib.OldVerifyKey{}}
	body, err := json.Marshal(fields)
	if err == nil {
		body, err = gomatrixserverlib.SignJSON(string(p.Name), p.keyID, p.key, body)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}

// receive is PUT /send from the daemon: the peer learns the room's new
// events (alice's messages), so its next event builds on them. It checks
// no signatures: the daemon is not what is under test here.
//
// In strict mode a PDU of a room the peer has no joined member in is
// refused in the answer's pdus map and recorded (refusedPDUs), as a
// strict implementation does instead of storing events it cannot place.
func (p *fedPeer) receive(w http.ResponseWriter, r *http.Request) {
	var txn struct {
		PDUs []json.RawMessage `json:"pdus"`
		EDUs []struct {
			Type string `json:"edu_type"`
		} `json:"edus"`
	}
	json.NewDecoder(r.Body).Decode(&txn)
	results := map[string]fclient.PDUResult{}
	p.mu.Lock()
	for _, edu := range txn.EDUs {
		p.calls["edu "+edu.Type]++ // read with p.called("edu m.presence")
	}
	for _, raw := range txn.PDUs {
		roomID := gjson.GetBytes(raw, "room_id").String()
		rm := p.rooms[roomID]
		if p.isStrict && (rm == nil || !rm.joined(p.Name)) {
			id := p.refuse(roomID, raw)
			results[id] = fclient.PDUResult{Error: "test peer: no joined member in " + roomID}
			continue
		}
		if rm == nil {
			continue
		}
		if pdu, err := gomatrixserverlib.MustGetRoomVersion(rm.version).NewEventFromUntrustedJSON(raw); err == nil {
			rm.add(pdu)
		}
	}
	p.mu.Unlock()
	writePeerJSON(w, http.StatusOK, fclient.RespSend{PDUs: results})
}

// callback answers a daemon's request as p.answer says, counting it.
func (p *fedPeer) callback(name string, real http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.calls[name]++
		answer := p.answer
		p.mu.Unlock()
		switch answer {
		case answerGarbage:
			// Well-formed JSON under every name the callbacks use, none
			// of it an event.
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"events":[{"type":"m.room.message","room_id":"!x:peer.test","depth":-1,"prev_events":"loop"},7,null,"$x"],`+
				`"pdus":[[]],"auth_chain":[{"hashes":{}}],"origin":"peer.test","origin_server_ts":"never"}`)
		default:
			p.misbehave(w, r, answer, real)
		}
	}
}

// misbehave answers as a says: hang, refuse, or really.
func (p *fedPeer) misbehave(w http.ResponseWriter, r *http.Request, a peerAnswer, real http.HandlerFunc) {
	switch a {
	case answerHang:
		select {
		case <-r.Context().Done():
		case <-p.stop:
		}
	case answerRefuse:
		writePeerJSON(w, http.StatusForbidden, map[string]string{"errcode": "M_FORBIDDEN", "error": "test peer: refused"})
	default:
		real(w, r)
	}
}

// missingEvents answers get_missing_events with the events it withheld.
func (p *fedPeer) missingEvents(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	var res fclient.RespMissingEvents
	if rm := p.rooms[r.PathValue("roomID")]; rm != nil {
		res.Events = gomatrixserverlib.NewEventJSONsFromEvents(rm.withheld)
	}
	p.mu.Unlock()
	if res.Events == nil {
		res.Events = gomatrixserverlib.EventJSONs{}
	}
	writePeerJSON(w, http.StatusOK, res)
}

// setAnswer sets how the callbacks answer from now on.
func (p *fedPeer) setAnswer(a peerAnswer) {
	p.mu.Lock()
	p.answer = a
	p.mu.Unlock()
}

// called is how many requests the daemon made to a callback.
func (p *fedPeer) called(name string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[name]
}

func (rm *peerRoom) add(pdu gomatrixserverlib.PDU) {
	pdu.EventID() // computed once, before the event is shared
	if sk := pdu.StateKey(); sk != nil {
		rm.state[pdu.Type()+"\x00"+*sk] = pdu
	}
	if rm.latest == nil || pdu.Depth() >= rm.latest.Depth() {
		rm.latest = pdu
	}
}

// join joins user (of the peer) to roomID through the daemon with
// make_join and send_join, and remembers the room's state.
func (p *fedPeer) join(user, roomID string) {
	t := p.t
	t.Helper()
	userID := "@" + user + ":" + string(p.Name)
	mj, err := p.client.MakeJoin(ctx(t), p.Name, p.hs, roomID, userID)
	noErr(t, err, "make_join %s", roomID)
	ver := gomatrixserverlib.MustGetRoomVersion(mj.RoomVersion)
	mj.JoinEvent.SenderID = userID
	joinEv, err := ver.NewEventBuilderFromProtoEvent(&mj.JoinEvent).Build(time.Now(), p.Name, p.keyID, p.key)
	noErr(t, err, "build the join")
	// The peer counts itself in the room from send_join on, as a real
	// server does: the daemon may send it the room's next events before
	// send_join's answer is read here.
	rm := &peerRoom{version: mj.RoomVersion, state: map[string]gomatrixserverlib.PDU{}}
	rm.add(joinEv)
	p.mu.Lock()
	p.rooms[roomID] = rm
	p.mu.Unlock()
	sj, err := p.client.SendJoin(ctx(t), p.Name, p.hs, joinEv)
	noErr(t, err, "send_join %s", roomID)
	var state []gomatrixserverlib.PDU
	for _, raw := range sj.StateEvents {
		pdu, err := ver.NewEventFromUntrustedJSON(raw)
		noErr(t, err, "state event from send_join")
		state = append(state, pdu)
	}
	p.mu.Lock()
	for _, pdu := range state {
		if sk := pdu.StateKey(); sk != nil && pdu.Type() == spec.MRoomMember && *sk == userID {
			continue // the peer's own join stays
		}
		rm.add(pdu)
	}
	rm.add(joinEv) // the newest event unless the daemon sent newer ones meanwhile
	p.mu.Unlock()
}

// evSpec describes an event the peer builds; zero fields take defaults.
type evSpec struct {
	Type     string
	StateKey *string
	Content  any
	Sender   string                  // default @mallory:<peer>
	Prevs    []string                // default the room's latest event
	Depth    int64                   // default latest's depth + 1
	KeyID    gomatrixserverlib.KeyID // default the peer's published key
	Key      ed25519.PrivateKey
	Auth     []string // default chosen from the peer's copy of the state
}

// build builds and signs an event in roomID on top of what the peer knows
// (auth events from its copy of the state). It changes nothing: sent
// events are recorded with accepted.
func (p *fedPeer) build(roomID string, s evSpec) gomatrixserverlib.PDU {
	t := p.t
	t.Helper()
	// A copy of what the peer knows, taken under the lock: the daemon's
	// transactions update it meanwhile.
	p.mu.Lock()
	rm := p.rooms[roomID]
	var version gomatrixserverlib.RoomVersion
	var latest gomatrixserverlib.PDU
	var state []gomatrixserverlib.PDU
	if rm != nil {
		version, latest = rm.version, rm.latest
		for _, pdu := range rm.state {
			state = append(state, pdu)
		}
	}
	p.mu.Unlock()
	if rm == nil {
		t.Fatalf("peer is not in %s", roomID)
	}
	ver := gomatrixserverlib.MustGetRoomVersion(version)
	eb := ver.NewEventBuilder()
	eb.SenderID, eb.RoomID, eb.Type, eb.StateKey = s.Sender, roomID, s.Type, s.StateKey
	if eb.SenderID == "" {
		eb.SenderID = p.mallory()
	}
	eb.PrevEvents, eb.Depth = s.Prevs, s.Depth
	if s.Prevs == nil {
		eb.PrevEvents = []string{latest.EventID()}
	}
	if eb.Depth == 0 {
		eb.Depth = latest.Depth() + 1
	}
	noErr(t, eb.SetContent(s.Content), "event content")
	auth, err := gomatrixserverlib.NewAuthEvents(state)
	noErr(t, err, "auth events")
	noErr(t, eb.AddAuthEvents(auth), "add auth events")
	if s.Auth != nil {
		eb.AuthEvents = s.Auth
	}
	keyID, key := s.KeyID, s.Key
	if key == nil {
		keyID, key = p.keyID, p.key
	}
	pdu, err := eb.Build(time.Now(), p.Name, keyID, key)
	noErr(t, err, "build %s", s.Type)
	pdu.EventID()
	return pdu
}

// latest is the newest event the peer knows in roomID.
func (p *fedPeer) latest(roomID string) gomatrixserverlib.PDU {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rooms[roomID].latest
}

// stateEvent is the peer's copy of a state event of roomID.
func (p *fedPeer) stateEvent(roomID, typ, stateKey string) gomatrixserverlib.PDU {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rooms[roomID].state[typ+"\x00"+stateKey]
}

// message builds an m.text message from mallory.
func (p *fedPeer) message(roomID, body string) gomatrixserverlib.PDU {
	return p.build(roomID, evSpec{Type: "m.room.message", Content: map[string]any{"msgtype": "m.text", "body": body}})
}

func (p *fedPeer) mallory() string { return "@mallory:" + string(p.Name) }

// accepted records events the daemon took, so later events build on them.
func (p *fedPeer) accepted(roomID string, pdus ...gomatrixserverlib.PDU) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pdu := range pdus {
		p.rooms[roomID].add(pdu)
	}
}

// withhold records an event the peer has but does not send: it answers
// get_missing_events with it.
func (p *fedPeer) withhold(roomID string, pdu gomatrixserverlib.PDU) {
	p.mu.Lock()
	defer p.mu.Unlock()
	rm := p.rooms[roomID]
	rm.withheld = append(rm.withheld, pdu)
	sort.Slice(rm.withheld, func(i, j int) bool { return rm.withheld[i].Depth() < rm.withheld[j].Depth() })
}

// reforge edits an event's JSON and gives it a correct content hash and
// the peer's real signature again, so the edit is the one thing wrong
// with it (gomatrixserverlib's builder refuses some edits, such as a
// depth beyond canonical JSON's integers).
func (p *fedPeer) reforge(version gomatrixserverlib.RoomVersion, raw []byte, edit func(map[string]any)) []byte {
	t := p.t
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	noErr(t, dec.Decode(&m), "decode event")
	edit(m)
	delete(m, "hashes")
	delete(m, "signatures")
	delete(m, "unsigned")
	b, err := json.Marshal(m)
	noErr(t, err, "encode event")
	canon, err := gomatrixserverlib.CanonicalJSON(b)
	noErr(t, err, "canonical event")
	sum := sha256.Sum256(canon)
	m["hashes"] = map[string]string{"sha256": base64.RawStdEncoding.EncodeToString(sum[:])}
	b, err = json.Marshal(m)
	noErr(t, err, "encode event")
	redacted, err := gomatrixserverlib.MustGetRoomVersion(version).RedactEventJSON(b)
	noErr(t, err, "redact event")
	signed, err := gomatrixserverlib.SignJSON(string(p.Name), p.keyID, p.key, redacted)
	noErr(t, err, "sign event")
	m["signatures"] = json.RawMessage(gjson.GetBytes(signed, "signatures").Raw)
	b, err = json.Marshal(m)
	noErr(t, err, "encode event")
	out, err := gomatrixserverlib.CanonicalJSON(b)
	noErr(t, err, "canonical event")
	return out
}

// sendTxn sends PUT /send/{txnID} with the raw PDUs and returns the
// status and the answer's PDU results (nil unless 200).
func (p *fedPeer) sendTxn(txnID string, pdus ...json.RawMessage) (int, map[string]fclient.PDUResult) {
	p.t.Helper()
	code, res, err := p.trySend(txnID, pdus...)
	noErr(p.t, err, "/send %s", txnID)
	return code, res
}

// trySend is sendTxn for other goroutines than the test's: it fails
// nothing, it returns the error.
func (p *fedPeer) trySend(txnID string, pdus ...json.RawMessage) (int, map[string]fclient.PDUResult, error) {
	return p.trySendCtx(p.t.Context(), txnID, pdus...)
}

// trySendCtx is trySend that gives up when c ends.
func (p *fedPeer) trySendCtx(c context.Context, txnID string, pdus ...json.RawMessage) (int, map[string]fclient.PDUResult, error) {
	if pdus == nil {
		pdus = []json.RawMessage{}
	}
	txn := gomatrixserverlib.Transaction{Origin: p.Name, OriginServerTS: spec.AsTimestamp(time.Now()), PDUs: pdus}
	code, body, err := p.tryDo(c, "PUT", p.hs, "/_matrix/federation/v1/send/"+txnID, txn, true)
	if err != nil || code != http.StatusOK {
		return code, nil, err
	}
	var res fclient.RespSend
	if err := json.Unmarshal(body, &res); err != nil {
		return code, nil, fmt.Errorf("decode /send answer %s: %w", body, err)
	}
	return code, res.PDUs, nil
}

// txnID is a new transaction ID.
func (p *fedPeer) txnID() string { return fmt.Sprintf("txn%d", p.txns.Add(1)) }

// raws is the JSON of events, for sendTxn.
func raws(pdus ...gomatrixserverlib.PDU) []json.RawMessage {
	out := make([]json.RawMessage, len(pdus))
	for i, pdu := range pdus {
		out[i] = pdu.JSON()
	}
	return out
}

// do makes a federation request to the daemon, X-Matrix signed for
// destination when signed is set, and returns the status and body.
func (p *fedPeer) do(method string, destination spec.ServerName, path string, content any, signed bool) (int, []byte) {
	p.t.Helper()
	code, body, err := p.tryDo(p.t.Context(), method, destination, path, content, signed)
	noErr(p.t, err, "%s %s", method, path)
	return code, body
}

func (p *fedPeer) tryDo(c context.Context, method string, destination spec.ServerName, path string, content any, signed bool) (int, []byte, error) {
	fr := fclient.NewFederationRequest(method, p.Name, destination, path)
	if content != nil {
		if err := fr.SetContent(content); err != nil {
			return 0, nil, err
		}
	}
	if signed {
		if err := fr.Sign(p.Name, p.keyID, p.key); err != nil {
			return 0, nil, err
		}
	}
	req, err := fr.HTTPRequest()
	if err != nil {
		return 0, nil, err
	}
	// Always to p.hs's listener, whatever the signed destination says.
	req.URL.Host = string(p.hs)
	resp, err := p.http.Do(req.WithContext(c))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// errcode is the errcode of a Matrix error body.
func errcode(body []byte) string { return gjson.GetBytes(body, "errcode").String() }

// peerName is the server name of the test peer.
const peerName = "peer.test"
