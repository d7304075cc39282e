package main

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// fedPeer is a federation server inside the bench process, written with
// gomatrixserverlib: it serves its signing key and the callbacks a daemon
// makes, joins rooms on a daemon (make_join, send_join), sends it
// transactions of events it built and signed, and hosts a room of its own
// that a daemon joins. It talks to the daemons over the same TLS and
// X-Matrix paths a real server would.
type fedPeer struct {
	name   spec.ServerName
	keyID  gomatrixserverlib.KeyID
	key    ed25519.PrivateKey
	addr   string // its federation listener, 127.0.0.1:port
	srv    *http.Server
	tr     *peerTransport
	client fclient.FederationClient
	raw    *fclient.Client // sends requests signed ahead (signTxn)
	txns   atomic.Int64

	mu     sync.Mutex
	calls  map[string]int       // route pattern → requests the daemons made
	rooms  map[string]*peerRoom // rooms it joined or hosts, by ID
	hosted map[string]*peerRoom // the subset it hosts: it answers make/send_join
}

// peerRoom is the peer's copy of a room: its state, every event it knows
// by ID (for /event and /state_ids) and its latest event, on top of which
// the next one is built.
type peerRoom struct {
	id      string
	version gomatrixserverlib.RoomVersion
	state   map[string]gomatrixserverlib.PDU // type + "\x00" + state_key
	auth    *gomatrixserverlib.AuthEvents    // the same state, for choosing auth_events
	byID    map[string]gomatrixserverlib.PDU
	latest  gomatrixserverlib.PDU
}

func newPeerRoom(id string, version gomatrixserverlib.RoomVersion) *peerRoom {
	auth, _ := gomatrixserverlib.NewAuthEvents(nil)
	return &peerRoom{id: id, version: version, state: map[string]gomatrixserverlib.PDU{}, auth: auth,
		byID: map[string]gomatrixserverlib.PDU{}}
}

func (rm *peerRoom) add(pdu gomatrixserverlib.PDU) {
	rm.byID[pdu.EventID()] = pdu
	if sk := pdu.StateKey(); sk != nil {
		rm.state[pdu.Type()+"\x00"+*sk] = pdu
		rm.auth.AddEvent(pdu)
	}
	if rm.latest == nil || pdu.Depth() >= rm.latest.Depth() {
		rm.latest = pdu
	}
}

// newFedPeer starts a peer called name on a free loopback port with a
// certificate from ca. Its transport learns the daemons' addresses later
// (setAddrs), once the caller has chosen them.
func newFedPeer(ca *benchCA, name string) (*fedPeer, error) {
	cert, err := ca.tlsCert(name)
	if err != nil {
		return nil, err
	}
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &fedPeer{name: spec.ServerName(name), keyID: "ed25519:bench", key: key, addr: ln.Addr().String(),
		calls: map[string]int{}, rooms: map[string]*peerRoom{}, hosted: map[string]*peerRoom{}}
	p.srv = &http.Server{Handler: p.routes(), TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)} // handshakes cut short at shutdown
	go p.srv.ServeTLS(ln, "", "")
	p.tr = &peerTransport{roots: ca.pool(), byName: map[string]*http.Transport{}}
	p.client = fclient.NewFederationClient([]*fclient.SigningIdentity{{ServerName: p.name, KeyID: p.keyID, PrivateKey: key}},
		fclient.WithTransport(p.tr), fclient.WithTimeout(2*time.Minute))
	p.raw = fclient.NewClient(fclient.WithTransport(p.tr), fclient.WithTimeout(2*time.Minute))
	return p, nil
}

func (p *fedPeer) close() {
	p.srv.Close()
	p.tr.close()
}

// peerTransport sends matrix://name/... to the listener of the server
// called name, over TLS checked against the bench CA, keeping
// connections alive (one transaction after another on one connection, as
// a real server's queue would).
type peerTransport struct {
	roots  *x509.CertPool
	mu     sync.Mutex
	addrs  map[string]string
	byName map[string]*http.Transport
}

func (pt *peerTransport) setAddrs(addrs map[string]string) {
	pt.mu.Lock()
	pt.addrs = addrs
	pt.mu.Unlock()
}

func (pt *peerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	name := req.URL.Host
	pt.mu.Lock()
	addr, ok := pt.addrs[name]
	tr := pt.byName[name]
	if ok && tr == nil {
		tr = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pt.roots, ServerName: name},
			MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second}
		pt.byName[name] = tr
	}
	pt.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("peer: no address for %q", name)
	}
	out := req.Clone(req.Context())
	out.URL.Scheme, out.URL.Host, out.Host = "https", addr, name
	return tr.RoundTrip(out)
}

func (pt *peerTransport) close() {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	for _, tr := range pt.byName {
		tr.CloseIdleConnections()
	}
}

func (p *fedPeer) routes() http.Handler {
	mux := http.NewServeMux()
	h := func(pattern string, fn http.HandlerFunc) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			p.mu.Lock()
			p.calls[pattern]++
			p.mu.Unlock()
			fn(w, r)
		})
	}
	h("GET /_matrix/key/v2/server", p.serveKeys)
	h("GET /_matrix/key/v2/server/{keyID}", p.serveKeys)
	h("PUT /_matrix/federation/v1/send/{txnID}", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // what the daemons relay is not needed here
		writeJSONResp(w, http.StatusOK, fclient.RespSend{PDUs: map[string]fclient.PDUResult{}})
	})
	h("GET /_matrix/federation/v1/make_join/{roomID}/{userID}", p.makeJoin)
	h("PUT /_matrix/federation/v2/send_join/{roomID}/{eventID}", p.sendJoin)
	h("GET /_matrix/federation/v1/event/{eventID}", p.event)
	h("GET /_matrix/federation/v1/state_ids/{roomID}", p.stateIDs)
	h("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSONResp(w, http.StatusNotFound, map[string]string{"errcode": "M_UNRECOGNIZED", "error": "bench peer: not served"})
	})
	return mux
}

// callCounts lists the requests the daemons made, busiest first, for the
// report ("GET /…/event/{eventID} ×3").
func (p *fedPeer) callCounts() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var parts []string
	for pat, n := range p.calls {
		parts = append(parts, fmt.Sprintf("%s ×%d", strings.TrimPrefix(strings.ReplaceAll(pat, "/_matrix/federation", ""), "GET "), n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func writeJSONResp(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// serveKeys is GET /_matrix/key/v2/server: the peer's one key,
// self-signed (gomatrixserverlib notes §7 "Serving").
func (p *fedPeer) serveKeys(w http.ResponseWriter, _ *http.Request) {
	fields := gomatrixserverlib.ServerKeyFields{ServerName: p.name,
		VerifyKeys:    map[gomatrixserverlib.KeyID]gomatrixserverlib.VerifyKey{p.keyID: {Key: spec.Base64Bytes(p.key.Public().(ed25519.PublicKey))}},
		ValidUntilTS:  spec.AsTimestamp(time.Now().Add(24 * time.Hour)),
		OldVerifyKeys: map[gomatrixserverlib.KeyID]gomatrixserverlib.OldVerifyKey{}}
	body, err := json.Marshal(fields)
	if err == nil {
		body, err = gomatrixserverlib.SignJSON(string(p.name), p.keyID, p.key, body)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}

// build builds and signs an event in rm on top of its latest event, with
// auth_events chosen from the peer's copy of the state, and adds it to
// rm. Callers hold no lock: rm is only touched by one goroutine while it
// is being built (rooms are filled before the daemons are asked anything
// about them).
func (p *fedPeer) build(rm *peerRoom, sender, typ string, stateKey *string, content any) (gomatrixserverlib.PDU, error) {
	eb := gomatrixserverlib.MustGetRoomVersion(rm.version).NewEventBuilder()
	eb.SenderID, eb.RoomID, eb.Type, eb.StateKey = sender, rm.id, typ, stateKey
	eb.PrevEvents, eb.Depth = []string{}, 1
	if rm.latest != nil {
		eb.PrevEvents, eb.Depth = []string{rm.latest.EventID()}, rm.latest.Depth()+1
	}
	if err := eb.SetContent(content); err != nil {
		return nil, err
	}
	if err := eb.AddAuthEvents(rm.auth); err != nil {
		return nil, err
	}
	pdu, err := eb.Build(time.Now(), p.name, p.keyID, p.key)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", typ, err)
	}
	pdu.EventID() // computed once here, before the event is shared
	rm.add(pdu)
	return pdu, nil
}

// joinRoom joins @user:peer to roomID on the daemon hs with make_join and
// send_join, and keeps the room's state from the answer.
func (p *fedPeer) joinRoom(ctx context.Context, hs spec.ServerName, user, roomID string) (*peerRoom, error) {
	userID := "@" + user + ":" + string(p.name)
	mj, err := p.client.MakeJoin(ctx, p.name, hs, roomID, userID)
	if err != nil {
		return nil, fmt.Errorf("make_join: %w", err)
	}
	ver, err := gomatrixserverlib.GetRoomVersion(mj.RoomVersion)
	if err != nil {
		return nil, err
	}
	mj.JoinEvent.SenderID = userID
	join, err := ver.NewEventBuilderFromProtoEvent(&mj.JoinEvent).Build(time.Now(), p.name, p.keyID, p.key)
	if err != nil {
		return nil, fmt.Errorf("build the join: %w", err)
	}
	sj, err := p.client.SendJoin(ctx, p.name, hs, join)
	if err != nil {
		return nil, fmt.Errorf("send_join: %w", err)
	}
	rm := newPeerRoom(roomID, mj.RoomVersion)
	for _, raw := range sj.StateEvents {
		pdu, err := ver.NewEventFromUntrustedJSON(raw)
		if err != nil {
			return nil, fmt.Errorf("state event from send_join: %w", err)
		}
		rm.add(pdu)
	}
	rm.add(join)
	rm.latest = join
	p.mu.Lock()
	p.rooms[roomID] = rm
	p.mu.Unlock()
	return rm, nil
}

// signedTxn is one transaction's PUT /send request, built and signed
// (X-Matrix over the whole body) ahead of sending.
type signedTxn struct{ req *http.Request }

// signTxn builds and signs the request that sends pdus to hs as one
// transaction. The ingest row signs every request before its clock
// starts: a real sending server signs on its own machine, and here the
// peer shares hs1's two cores, where signing a 50-PDU body in the send
// loop took about 3 ms per transaction (docs/performance.md, "Federation
// ingest"). hs1 still checks every signature.
func (p *fedPeer) signTxn(hs spec.ServerName, pdus []gomatrixserverlib.PDU) (signedTxn, error) {
	raws := make([]json.RawMessage, len(pdus))
	for i, pdu := range pdus {
		raws[i] = pdu.JSON()
	}
	txn := gomatrixserverlib.Transaction{TransactionID: gomatrixserverlib.TransactionID(fmt.Sprintf("bench%d", p.txns.Add(1))),
		Origin: p.name, Destination: hs, OriginServerTS: spec.AsTimestamp(time.Now()), PDUs: raws}
	req := fclient.NewFederationRequest(http.MethodPut, p.name, hs, "/_matrix/federation/v1/send/"+string(txn.TransactionID))
	if err := req.SetContent(txn); err != nil {
		return signedTxn{}, err
	}
	if err := req.Sign(p.name, p.keyID, p.key); err != nil {
		return signedTxn{}, err
	}
	hr, err := req.HTTPRequest()
	if err != nil {
		return signedTxn{}, err
	}
	return signedTxn{req: hr}, nil
}

// sendSigned sends a transaction signTxn made and returns how many of
// its PDUs the daemon refused.
func (p *fedPeer) sendSigned(ctx context.Context, t signedTxn) (int, error) {
	var res fclient.RespSend
	if err := p.raw.DoRequestAndParseResponse(ctx, t.req.WithContext(ctx), &res); err != nil {
		return 0, err
	}
	refused := 0
	for _, r := range res.PDUs {
		if r.Error != "" {
			refused++
		}
	}
	return refused, nil
}
