package federation

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

// ingestRoom is a public room of alice@hs.test that mallory@peer.test
// has joined over federation, with a builder for a chain of messages.
type ingestRoom struct {
	f      *fzServer
	id     string
	prev   string
	depth  int64
	auth   []gomatrixserverlib.PDU
	sender string
}

func newIngestRoom(tb testing.TB) *ingestRoom {
	tb.Helper()
	f := newFzServer(tb)
	id, err := f.rooms.CreateRoom(context.Background(), "@alice:"+fzHome, room.Profile{}, room.CreateRequest{Preset: "public_chat", RoomVersion: "10"})
	if err != nil {
		tb.Fatal(err)
	}
	f.roomV[id] = "10"
	mallory := "@mallory:" + fzPeer
	join := f.event(tb, id, "m.room.member", &mallory, map[string]any{"membership": "join"})
	if res := sendTxn(tb, f, fmt.Sprintf("join%d", f.txns.Add(1)), []gomatrixserverlib.PDU{join}); res[join.EventID()] != "" {
		tb.Fatalf("mallory's join refused: %s", res[join.EventID()])
	}
	r := &ingestRoom{f: f, id: id, prev: join.EventID(), depth: join.Depth(), sender: mallory}
	for _, k := range [][2]string{{"m.room.create", ""}, {"m.room.power_levels", ""}, {"m.room.member", mallory}} {
		r.auth = append(r.auth, f.rooms.CurrentStatePDU(id, k[0], k[1]))
	}
	return r
}

// chain builds n messages of mallory, each on the one before, signed
// by peer.test's key.
func (r *ingestRoom) chain(tb testing.TB, n int) []gomatrixserverlib.PDU {
	tb.Helper()
	return r.chainSigned(tb, n, r.f.peerSK)
}

// chainSigned is chain with the events signed by key under peer.test's
// key ID.
func (r *ingestRoom) chainSigned(tb testing.TB, n int, key ed25519.PrivateKey) []gomatrixserverlib.PDU {
	tb.Helper()
	return r.chainSignedAs(tb, n, r.f.peerID, key)
}

// chainSignedAs is chain with the events signed by key under keyID.
func (r *ingestRoom) chainSignedAs(tb testing.TB, n int, keyID gomatrixserverlib.KeyID, key ed25519.PrivateKey) []gomatrixserverlib.PDU {
	tb.Helper()
	ver := gomatrixserverlib.MustGetRoomVersion(r.f.roomV[r.id])
	auth, err := gomatrixserverlib.NewAuthEvents(r.auth)
	if err != nil {
		tb.Fatal(err)
	}
	out := make([]gomatrixserverlib.PDU, n)
	for i := range out {
		eb := ver.NewEventBuilder()
		eb.SenderID, eb.RoomID, eb.Type = r.sender, r.id, "m.room.message"
		r.depth++
		eb.PrevEvents, eb.Depth = []string{r.prev}, r.depth
		if err := eb.SetContent(map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("ingest %d", r.depth)}); err != nil {
			tb.Fatal(err)
		}
		if err := eb.AddAuthEvents(auth); err != nil {
			tb.Fatal(err)
		}
		if out[i], err = eb.Build(time.Now(), fzPeer, keyID, key); err != nil {
			tb.Fatal(err)
		}
		r.prev = out[i].EventID()
	}
	return out
}

// sendTxn puts a transaction of pdus to the /send handler as peer.test
// and returns the error string per event ID.
func sendTxn(tb testing.TB, f *fzServer, txnID string, pdus []gomatrixserverlib.PDU) map[string]string {
	tb.Helper()
	raws := make([]json.RawMessage, len(pdus))
	for i, p := range pdus {
		raws[i] = p.JSON()
	}
	body, _ := json.Marshal(map[string]any{"origin": fzPeer, "origin_server_ts": 1, "pdus": raws, "edus": []any{}})
	req := httptest.NewRequestWithContext(context.Background(), "PUT", "/_matrix/federation/v1/send/"+txnID, nil)
	req.SetPathValue("txnID", txnID)
	rec := httptest.NewRecorder()
	matrixerr.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		return f.svc.send(w, &request{Request: req, origin: fzPeer, body: body})
	}).ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		tb.Fatalf("HTTP %d: %s", rec.Code, rec.Body)
	}
	var res struct {
		PDUs map[string]struct {
			Error string `json:"error"`
		} `json:"pdus"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
		tb.Fatal(err)
	}
	out := map[string]string{}
	for id, r := range res.PDUs {
		out[id] = r.Error
	}
	return out
}

// BenchmarkSendTransaction replays the bench's federation ingest inside
// one process: transactions of 50 chained messages, signatures checked,
// through the real handler, engine and bbolt store. It is for profiles
// (-cpuprofile) and for the CPU time a PDU costs (cpu-µs/PDU, the
// process's user+system time while the handler runs), which a machine
// busy with other work inflates less than the wall time; the figure that
// counts is `make bench`'s.
func BenchmarkSendTransaction(b *testing.B) {
	r := newIngestRoom(b)
	var cpu time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		pdus := r.chain(b, 50)
		b.StartTimer()
		c0 := cpuTime()
		res := sendTxn(b, r.f, fmt.Sprintf("bench%d", i), pdus)
		cpu += cpuTime() - c0
		for _, p := range pdus {
			if e := res[p.EventID()]; e != "" {
				b.Fatalf("%s refused: %s", p.EventID(), e)
			}
		}
	}
	b.ReportMetric(float64(b.N*50)/b.Elapsed().Seconds(), "PDUs/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*50), "cpu-µs/PDU")
}

// TestSendTransactionChecksEachPDU: the events of one transaction are
// checked on several cores and stored in one commit with the answer, and
// still each on its own: a chain of 49 with one more event whose
// signature is not peer.test's in the middle of the transaction. The
// chain is stored in order; the event failing its content hash (the
// last of the chain) is stored redacted (§"Checks performed on receipt
// of a PDU"); the badly signed one is refused and not stored. The same
// transaction ID sent again gets the same answer.
func TestSendTransactionChecksEachPDU(t *testing.T) {
	r := newIngestRoom(t)
	chain := r.chain(t, 49)
	_, other, _ := ed25519.GenerateKey(nil)
	forged := r.chainSigned(t, 1, other)[0]
	last := chain[48]
	tamperedJSON := bytes.Replace(last.JSON(), []byte(`"ingest `), []byte(`"tampered `), 1)
	tampered, err := gomatrixserverlib.MustGetRoomVersion("10").NewEventFromUntrustedJSON(tamperedJSON)
	if err != nil || !tampered.Redacted() || tampered.EventID() != last.EventID() {
		t.Fatalf("the tampered event should parse redacted with the same ID: %v", err)
	}
	pdus := slices.Concat(chain[:25], []gomatrixserverlib.PDU{forged}, chain[25:48], []gomatrixserverlib.PDU{tampered})
	if len(pdus) != maxPDUs {
		t.Fatalf("%d PDUs", len(pdus))
	}
	res := sendTxn(t, r.f, "checks", pdus)
	if len(res) != len(pdus) {
		t.Fatalf("%d results for %d PDUs: %v", len(res), len(pdus), res)
	}
	for _, p := range chain {
		if e := res[p.EventID()]; e != "" {
			t.Errorf("%s refused: %s", p.EventID(), e)
		}
	}
	if e := res[forged.EventID()]; !strings.Contains(e, "bad signature") {
		t.Errorf("the forged event's result is %q, want a bad signature", e)
	}
	alice := "@alice:" + fzHome
	for _, p := range chain[:48] {
		ev, err := r.f.rooms.Event(alice, r.id, p.EventID())
		if err != nil || !bytes.Contains(ev.Content, []byte(`"ingest `)) {
			t.Fatalf("alice reads %s as %v (err %v)", p.EventID(), ev, err)
		}
	}
	if ev, err := r.f.rooms.Event(alice, r.id, last.EventID()); err != nil || bytes.Contains(ev.Content, []byte("ingest")) || bytes.Contains(ev.Content, []byte("tampered")) {
		t.Errorf("the event failing its hash should be stored redacted: %v (err %v)", ev, err)
	}
	if _, err := r.f.rooms.Event(alice, r.id, forged.EventID()); err == nil {
		t.Errorf("the forged event was stored")
	}
	ext, err := r.f.rooms.Extremities(r.id)
	if err != nil || len(ext) != 1 || ext[0] != last.EventID() {
		t.Errorf("extremities %v (err %v), want the chain's last event", ext, err)
	}
	if again := sendTxn(t, r.f, "checks", pdus[:1]); !maps.Equal(again, res) {
		t.Errorf("the same transaction ID answered %v, then %v", res, again)
	}
}

// TestSendTransactionStateBeforeOverAuthEvents: an event whose own auth
// events allow it (mallory's join) but whose state before does not (alice
// banned mallory since) is rejected by check 5 of §"Checks performed on
// receipt of a PDU", though the events the auth rules see at check 4
// are ones of the same state keys.
func TestSendTransactionStateBeforeOverAuthEvents(t *testing.T) {
	r := newIngestRoom(t)
	ok := r.chain(t, 1)[0]
	if res := sendTxn(t, r.f, "before-ban", []gomatrixserverlib.PDU{ok}); res[ok.EventID()] != "" {
		t.Fatalf("mallory's message before the ban refused: %s", res[ok.EventID()])
	}
	ban, err := r.f.rooms.ChangeMembership(context.Background(), room.MembershipRequest{
		Sender: "@alice:" + fzHome, RoomID: r.id, Target: r.sender, Membership: "ban"})
	if err != nil {
		t.Fatal(err)
	}
	r.prev = ban
	r.depth += 10
	late := r.chain(t, 1)[0] // auth events: create, power levels, mallory's join
	res := sendTxn(t, r.f, "after-ban", []gomatrixserverlib.PDU{late})
	if e := res[late.EventID()]; !strings.Contains(e, "rejected") {
		t.Errorf("a message of a banned sender citing its old join: result %q, want rejected", e)
	}
	if _, err := r.f.rooms.Event("@alice:"+fzHome, r.id, late.EventID()); err == nil {
		t.Errorf("the banned sender's message is readable")
	}
}

// TestSendWriterNeverWaitsOnAKeyFetch: the store's writer takes a
// transaction's events as they are checked, but never waits for one
// whose signature check went to the key ring, which may fetch a key
// from another server: while that fetch hangs, a local user's send
// (which needs the writer) completes. The events before it are stored
// meanwhile; once the fetch answers, the transaction is answered as
// before (the event signed by a key peer.test does not have refused).
func TestSendWriterNeverWaitsOnAKeyFetch(t *testing.T) {
	r := newIngestRoom(t)
	chain := r.chain(t, 40)
	_, otherKey, _ := ed25519.GenerateKey(nil)
	unknown := r.chainSignedAs(t, 1, "ed25519:unknown", otherKey)[0]
	fetching, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	r.f.keyGate = func() {
		once.Do(func() { close(fetching) })
		<-release
	}
	pdus := append(slices.Clone(chain), unknown)
	answered := make(chan map[string]string, 1)
	go func() { answered <- sendTxn(t, r.f, "slow-key", pdus) }()
	<-fetching
	// The key fetch hangs; the writer must still be free. (A writer that
	// waits fails the test here instead of hanging it until go test's
	// own timeout.)
	sent := make(chan error, 1)
	go func() {
		_, err := r.f.rooms.Send(context.Background(), room.SendRequest{Sender: "@alice:" + fzHome, RoomID: r.id,
			Type: "m.room.message", Content: json.RawMessage(`{"msgtype":"m.text","body":"still here"}`), TxnID: "t1", Device: "D"})
		sent <- err
	}()
	select {
	case err := <-sent:
		if err != nil {
			t.Fatalf("a local send while a key fetch hangs: %v", err)
		}
	case <-time.After(time.Minute):
		close(release)
		t.Fatal("a local send waited a minute behind a hanging key fetch: the store's writer waits on it")
	}
	close(release)
	res := <-answered
	for _, p := range chain {
		if e := res[p.EventID()]; e != "" {
			t.Errorf("%s refused: %s", p.EventID(), e)
		}
	}
	if e := res[unknown.EventID()]; !strings.Contains(e, "bad signature") {
		t.Errorf("the event signed by an unknown key: %q, want a bad signature", e)
	}
}
