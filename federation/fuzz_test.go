package federation

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/federation/serverkeys"
	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

// Fuzz targets for what other servers feed this one: transaction bodies
// (PUT /send) and X-Matrix requests. `go test` runs them on their seeds;
// `go test -fuzz FuzzSendTransaction ./federation` explores further.
// The invariants: no panic, an answer the spec allows, every call ends
// (the network answers at once), and no input changes a room's state or
// timeline, since none can be signed by a member of the rooms.

const (
	fzHome = "hs.test"
	fzPeer = "peer.test"
)

// fzServer is a Service over a real store and room engine, with one v10
// and one v12 private room of @alice:hs.test. Its network is fzNet: the
// peer's key server answers, every other request fails at once.
type fzServer struct {
	svc    *Service
	rooms  *room.Engine
	roomV  map[string]gomatrixserverlib.RoomVersion // room ID → version
	peerID gomatrixserverlib.KeyID
	peerSK ed25519.PrivateKey
	txns   atomic.Int64
	// keyGate, if set, runs before peer.test's key server answers (a
	// test holds a key fetch with it).
	keyGate func()
}

func newFzServer(tb testing.TB) *fzServer {
	tb.Helper()
	_, homeKey, _ := ed25519.GenerateKey(nil)
	_, peerKey, _ := ed25519.GenerateKey(nil)
	keyID := gomatrixserverlib.KeyID("ed25519:h")
	st, err := room.Open(room.Options{Path: filepath.Join(tb.TempDir(), "hearth.db"),
		Engine: room.Config{ServerName: fzHome, KeyID: string(keyID), PrivateKey: homeKey}})
	if err != nil {
		tb.Fatal(err)
	}
	db := st.DB
	tb.Cleanup(func() { db.Close() })
	f := &fzServer{roomV: map[string]gomatrixserverlib.RoomVersion{}, peerID: "ed25519:p", peerSK: peerKey}
	net := &fzNet{keys: f.peerKeys}
	f.rooms = st.Engine
	sk := serverkeys.New(db, serverkeys.Identity{ServerName: fzHome, KeyID: keyID, Key: homeKey}, fclient.NewClient(fclient.WithTransport(net)), nil)
	client := fclient.NewFederationClient([]*fclient.SigningIdentity{{ServerName: fzHome, KeyID: keyID, PrivateKey: homeKey}}, fclient.WithTransport(net))
	f.svc = New(Config{ServerName: fzHome, KeyID: keyID, Key: homeKey, DB: db, Rooms: f.rooms,
		Accounts: account.New(db, fzHome), KeyRing: sk.KeyRing(), Client: client})
	sk.Register(f.svc.Mux())
	for _, v := range []string{"10", "12"} {
		id, err := f.rooms.CreateRoom(context.Background(), "@alice:"+fzHome, room.Profile{}, room.CreateRequest{Preset: "private_chat", RoomVersion: v})
		if err != nil {
			tb.Fatalf("create a v%s room: %v", v, err)
		}
		f.roomV[id] = gomatrixserverlib.RoomVersion(v)
	}
	return f
}

// peerKeys is GET /_matrix/key/v2/server of peer.test.
func (f *fzServer) peerKeys() []byte {
	if f.keyGate != nil {
		f.keyGate()
	}
	body, _ := json.Marshal(gomatrixserverlib.ServerKeyFields{ServerName: fzPeer,
		VerifyKeys:    map[gomatrixserverlib.KeyID]gomatrixserverlib.VerifyKey{f.peerID: {Key: spec.Base64Bytes(f.peerSK.Public().(ed25519.PublicKey))}},
		ValidUntilTS:  spec.AsTimestamp(time.Now().Add(time.Hour)),
		OldVerifyKeys: map[gomatrixserverlib.KeyID]gomatrixserverlib.OldVerifyKey{}})
	signed, _ := gomatrixserverlib.SignJSON(fzPeer, f.peerID, f.peerSK, body)
	return signed
}

// fzNet is the fuzzed server's network: only peer.test's key server.
type fzNet struct{ keys func() []byte }

func (n *fzNet) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		req.Body.Close()
	}
	if req.URL.Host == fzPeer && strings.HasPrefix(req.URL.Path, "/_matrix/key/v2/server") {
		rec := httptest.NewRecorder()
		rec.Header().Set("Content-Type", "application/json")
		rec.Write(n.keys())
		resp := rec.Result()
		resp.Request = req
		return resp, nil
	}
	return nil, errors.New("fuzz: no network")
}

// snapshot is what no input may change: each room's forward extremities
// and the event IDs of its state that the auth rules look at.
func (f *fzServer) snapshot(tb testing.TB) string {
	tb.Helper()
	var b strings.Builder
	for _, id := range slices.Sorted(maps.Keys(f.roomV)) {
		ext, err := f.rooms.Extremities(id)
		if err != nil {
			tb.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %v", id, ext)
		for _, k := range [][2]string{{"m.room.create", ""}, {"m.room.power_levels", ""}, {"m.room.join_rules", ""},
			{"m.room.history_visibility", ""}, {"m.room.member", "@alice:" + fzHome}, {"m.room.member", "@mallory:" + fzPeer}} {
			if p := f.rooms.CurrentStatePDU(id, k[0], k[1]); p != nil {
				fmt.Fprintf(&b, " %s=%s", k[0]+"/"+k[1], p.EventID())
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

// event builds an event of mallory@peer.test, signed by peer.test, on the
// room's current extremities with the auth events the room's state gives.
func (f *fzServer) event(tb testing.TB, roomID, typ string, stateKey *string, content any, prevs ...string) gomatrixserverlib.PDU {
	tb.Helper()
	ver := gomatrixserverlib.MustGetRoomVersion(f.roomV[roomID])
	eb := ver.NewEventBuilder()
	eb.SenderID, eb.RoomID, eb.Type, eb.StateKey = "@mallory:"+fzPeer, roomID, typ, stateKey
	ext, err := f.rooms.Extremities(roomID)
	if err != nil {
		tb.Fatal(err)
	}
	if prevs != nil {
		ext = prevs
	}
	eb.PrevEvents, eb.Depth = ext, 100
	if err := eb.SetContent(content); err != nil {
		tb.Fatal(err)
	}
	var state []gomatrixserverlib.PDU
	for _, k := range []string{"m.room.create", "m.room.power_levels", "m.room.join_rules"} {
		if p := f.rooms.CurrentStatePDU(roomID, k, ""); p != nil {
			state = append(state, p)
		}
	}
	auth, err := gomatrixserverlib.NewAuthEvents(state)
	if err != nil {
		tb.Fatal(err)
	}
	if err := eb.AddAuthEvents(auth); err != nil {
		tb.Fatal(err)
	}
	pdu, err := eb.Build(time.Now(), fzPeer, f.peerID, f.peerSK)
	if err != nil {
		tb.Fatal(err)
	}
	return pdu
}

// seedTransactions are transaction bodies: honest-looking ones signed by
// peer.test (which the auth rules refuse: mallory is in no room), a
// tampered one, one with a gap, EDUs of each kind, and malformed ones.
func (f *fzServer) seedTransactions(tb testing.TB) [][]byte {
	tb.Helper()
	txn := func(pdus []json.RawMessage, edus string) []byte {
		b, _ := json.Marshal(map[string]any{"origin": fzPeer, "origin_server_ts": 1, "pdus": pdus, "edus": json.RawMessage(edus)})
		return b
	}
	var seeds [][]byte
	mallory := "@mallory:" + fzPeer
	for id := range f.roomV {
		msg := f.event(tb, id, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "hi"})
		join := f.event(tb, id, "m.room.member", &mallory, map[string]any{"membership": "join"})
		empty := ""
		pl := f.event(tb, id, "m.room.power_levels", &empty, map[string]any{"users": map[string]int{mallory: 100}})
		tampered := bytes.Replace(msg.JSON(), []byte(`"hi"`), []byte(`"ho"`), 1)
		gap := f.event(tb, id, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "after a gap"},
			"$uR2kqRIb8qUfJ7-JhTOpI6Bb3k7Z2gTHbGV3nqaYkyQ")
		seeds = append(seeds,
			txn([]json.RawMessage{msg.JSON(), join.JSON(), pl.JSON()}, "[]"),
			txn([]json.RawMessage{tampered}, "[]"),
			txn([]json.RawMessage{gap.JSON()}, "[]"),
			txn([]json.RawMessage{msg.JSON(), msg.JSON()}, "[]"),
		)
	}
	seeds = append(seeds,
		txn(nil, `[{"edu_type":"m.typing","content":{"room_id":"!x:hs.test","user_id":"@mallory:peer.test","typing":true}},`+
			`{"edu_type":"m.receipt","content":{"!x:hs.test":{"m.read":{"@mallory:peer.test":{"event_ids":["$e"],"data":{}}}}}},`+
			`{"edu_type":"m.presence","content":{"push":[{"user_id":"@mallory:peer.test","presence":"online"}]}},`+
			`{"edu_type":"m.direct_to_device","content":{"sender":"@mallory:peer.test","type":"m.x","message_id":"1","messages":{"@alice:hs.test":{"*":{}}}}},`+
			`{"edu_type":"m.device_list_update","content":{"user_id":"@alice:hs.test","device_id":"D","stream_id":1}},`+
			`{"edu_type":"m.signing_key_update","content":null},{"edu_type":"m.unknown"}]`),
		[]byte(`{}`), []byte(`[]`), []byte(`null`), []byte(`{"pdus":null,"edus":null}`),
		[]byte(`{"origin":"other.test","pdus":[]}`),
		[]byte(`{"pdus":[1,"x",{},[],null,{"room_id":5},{"room_id":"!nope:hs.test"}]}`),
		[]byte(`{"pdus":[{"room_id":"!x","type":"m.room.message","depth":-1,"prev_events":"loop","auth_events":{}}]}`),
		[]byte(`{"pdus":[`+strings.Repeat(`{},`, 50)+`{}]}`),
		[]byte(`{"edus":[`+strings.Repeat(`{"edu_type":"m.typing"},`, 100)+`{}]}`),
	)
	return seeds
}

// FuzzSendTransaction feeds bodies to the /send handler as if peer.test
// had signed the request.
func FuzzSendTransaction(f *testing.F) {
	s := newFzServer(f)
	for _, seed := range s.seedTransactions(f) {
		f.Add(seed)
	}
	before := s.snapshot(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req := httptest.NewRequestWithContext(c, "PUT", "/_matrix/federation/v1/send/x", nil)
		req.SetPathValue("txnID", fmt.Sprintf("fuzz%d", s.txns.Add(1)))
		rec := httptest.NewRecorder()
		matrixerr.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
			return s.svc.send(w, &request{Request: req, origin: fzPeer, body: body})
		}).ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK:
			var res fclient.RespSend
			if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
				t.Fatalf("200 with an answer that is not RespSend: %v: %s", err, rec.Body)
			}
		case http.StatusBadRequest, http.StatusForbidden:
			if !json.Valid(rec.Body.Bytes()) || !strings.Contains(rec.Body.String(), `"errcode"`) {
				t.Fatalf("HTTP %d without a Matrix error: %s", rec.Code, rec.Body)
			}
		default:
			t.Fatalf("HTTP %d for a transaction body: %s", rec.Code, rec.Body)
		}
		if after := s.snapshot(t); after != before {
			t.Fatalf("a transaction from a server with no member in the rooms changed them:\nbefore %s\nafter  %s", before, after)
		}
	})
}

// FuzzXMatrixRequest feeds requests with arbitrary Authorization headers
// and bodies to the whole handler, X-Matrix verification included.
func FuzzXMatrixRequest(f *testing.F) {
	s := newFzServer(f)
	body := []byte(`{"origin":"peer.test","origin_server_ts":1,"pdus":[]}`)
	uri := "/_matrix/federation/v1/send/signed"
	fr := fclient.NewFederationRequest("PUT", fzPeer, fzHome, uri)
	if err := fr.SetContent(json.RawMessage(body)); err != nil {
		f.Fatal(err)
	}
	if err := fr.Sign(fzPeer, s.peerID, s.peerSK); err != nil {
		f.Fatal(err)
	}
	signed, err := fr.HTTPRequest()
	if err != nil {
		f.Fatal(err)
	}
	good := signed.Header.Get("Authorization")
	sig := good[strings.Index(good, "sig=")+4:]
	f.Add("PUT", uri, good, body)
	for _, h := range []string{"", "X-Matrix", "X-Matrix ", "Bearer x", `X-Matrix origin=peer.test`,
		`X-Matrix origin=peer.test,key="ed25519:p",sig="AAAA"`,
		`X-Matrix origin="peer.test",destination="hs.test",key="ed25519:p",sig=` + sig,
		`X-Matrix origin="peer.test,hs.test",destination="other.test",key="ed25519:p",sig=` + sig,
		`X-Matrix origin=,key=,sig=,destination=`, `X-Matrix origin=peer.test:99999,key="ed25519:p",sig="x"`,
		`X-Matrix origin=[::1],key="ed25519:p",sig="x"`, "X-Matrix ,,,,=,=,==", `X-Matrix origin=hs.test,key="ed25519:h",sig="x"`} {
		f.Add("PUT", uri, h, body)
	}
	f.Add("GET", "/_matrix/federation/v1/event/$x", good, []byte(nil))
	f.Add("POST", "/_matrix/federation/v1/get_missing_events/!x:hs.test", good, []byte(`{"limit":-1}`))
	f.Add("PUT", uri, good, []byte("\xff\xfe not utf-8"))
	f.Fuzz(func(t *testing.T, method, target, auth string, body []byte) {
		if !strings.HasPrefix(target, "/") {
			return
		}
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(c, method, "https://"+fzHome+target, bytes.NewReader(body))
		if err != nil {
			return // not a request an HTTP server would pass on
		}
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		s.svc.Handler().ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s with Authorization %q: HTTP %d %s", method, target, auth, rec.Code, rec.Body)
		}
	})
}
