package appservice

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
	"github.com/hearth-chat/hearth/internal/stream"
)

// asServer is a real HTTP appservice endpoint that records every
// transaction and answers as told: "ok", "fail" (500), "hang" (until the
// request is cancelled) or "garbage" (200 with a body that is not JSON).
type asServer struct {
	*httptest.Server
	mu   sync.Mutex
	mode string
	seen []asTxn
	hit  chan struct{}
}

type asTxn struct {
	ID, Auth, Mode string
	Bodies         []string // the events' content.body, in order
	Ephemeral      []string // their types
	ToDevice       []string // type, user, device
	Raw            string   // the whole body
}

func newASServer(t *testing.T) *asServer {
	a := &asServer{mode: "ok", hit: make(chan struct{}, 1000)}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := strings.CutPrefix(r.URL.Path, "/_matrix/app/v1/transactions/")
		if !ok || r.Method != http.MethodPut {
			http.NotFound(w, r)
			return
		}
		var body struct {
			Events []struct {
				Content struct{ Body string } `json:"content"`
			} `json:"events"`
			Ephemeral []struct{ Type string } `json:"ephemeral"`
			ToDevice  []struct {
				Type       string `json:"type"`
				ToUserID   string `json:"to_user_id"`
				ToDeviceID string `json:"to_device_id"`
			} `json:"to_device"`
		}
		data, _ := io.ReadAll(r.Body)
		json.Unmarshal(data, &body)
		a.mu.Lock()
		mode := a.mode
		rec := asTxn{ID: id, Auth: r.Header.Get("Authorization"), Mode: mode, Raw: string(data)}
		for _, e := range body.Events {
			rec.Bodies = append(rec.Bodies, e.Content.Body)
		}
		for _, e := range body.Ephemeral {
			rec.Ephemeral = append(rec.Ephemeral, e.Type)
		}
		for _, e := range body.ToDevice {
			rec.ToDevice = append(rec.ToDevice, e.Type+" "+e.ToUserID+" "+e.ToDeviceID)
		}
		a.seen = append(a.seen, rec)
		a.mu.Unlock()
		a.hit <- struct{}{}
		switch mode {
		case "fail":
			http.Error(w, `{"errcode":"M_UNKNOWN"}`, http.StatusInternalServerError)
		case "hang":
			<-r.Context().Done()
		case "garbage":
			w.Write([]byte("<html>not json"))
		default:
			w.Write([]byte("{}"))
		}
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *asServer) setMode(m string) { a.mu.Lock(); a.mode = m; a.mu.Unlock() }

// failedIDs is the transaction ID of every attempt the appservice
// failed, in order.
func (a *asServer) failedIDs() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var ids []string
	for _, t := range a.seen {
		if t.Mode == "fail" {
			ids = append(ids, t.ID)
		}
	}
	return ids
}

// delivered is the bodies of every acknowledged transaction, in order,
// each transaction ID counted once as an appservice does (hearth resends
// an ID whose answer it did not get in time, with the same events).
func (a *asServer) delivered() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	done := map[string]bool{}
	for _, t := range a.seen {
		if (t.Mode == "ok" || t.Mode == "garbage") && !done[t.ID] {
			done[t.ID] = true
			out = append(out, t.Bodies...)
		}
	}
	return out
}

// waitFor waits until cond holds, re-checking after each request the
// appservice gets (and every 20 ms, for what hearth does after the
// answer); the test fails after 10 s.
func (a *asServer) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-a.hit:
		case <-tick.C:
		case <-deadline:
			a.mu.Lock()
			defer a.mu.Unlock()
			t.Fatalf("%s: never happened; transactions seen: %+v", what, a.seen)
		}
	}
}

// queueWorld is a room with a ghost of appservice "br" and the human
// alice, over a real store and room engine.
type queueWorld struct {
	path   string
	db     *store.DB
	rooms  *room.Engine
	notify *stream.Notifier
	reg    *Registry
	q      *Queue
	as     *asServer
	roomID string
}

const qServer = "hearth.test"

func newQueueWorld(t *testing.T, path string, sec Secrets, as *asServer) *queueWorld {
	t.Helper()
	w := &queueWorld{path: path, as: as}
	_, key, _ := ed25519.GenerateKey(nil)
	st, err := room.Open(room.Options{Path: path, Engine: room.Config{ServerName: qServer, KeyID: "ed25519:t", PrivateKey: key}})
	if err != nil {
		t.Fatal(err)
	}
	db := st.DB
	w.db, w.notify, w.rooms = db, st.Notifier, st.Engine
	if w.reg, err = Open(db, account.New(db, qServer), sec); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *queueWorld) start(t *testing.T, tune func(*Queue)) {
	t.Helper()
	w.q = NewQueue(w.reg, w.db, w.rooms, w.notify)
	w.q.minBackoff, w.q.maxBackoff, w.q.sendTimeout = 20*time.Millisecond, 100*time.Millisecond, 200*time.Millisecond
	if tune != nil {
		tune(w.q)
	}
	if err := w.q.Start(); err != nil {
		t.Fatal(err)
	}
}

func (w *queueWorld) close() {
	w.q.Stop()
	w.db.Close()
}

const alice = "@alice:" + qServer

func setupQueueWorld(t *testing.T, tune func(*Queue)) *queueWorld {
	t.Helper()
	as := newASServer(t)
	w := newQueueWorld(t, filepath.Join(t.TempDir(), "hearth.db"), mapSecrets{}, as)
	t.Cleanup(func() {
		if w.db != nil {
			w.close()
		}
	})
	y := strings.Replace(regYAML("br", "br", true), `'^@br_.+:hearth\.test$'`, `'^@br_.+:hearth\.test$'`, 1)
	y = strings.Replace(y, "http://127.0.0.1:29318", as.URL, 1)
	if err := w.reg.Add(context.Background(), mustParse(t, y)); err != nil {
		t.Fatal(err)
	}
	w.start(t, tune)
	ctx := context.Background()
	ghost := "@br_ghost:" + qServer
	var err error
	if w.roomID, err = w.rooms.CreateRoom(ctx, alice, room.Profile{}, room.CreateRequest{Preset: "private_chat", Invite: []string{ghost}}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.rooms.ChangeMembership(ctx, room.MembershipRequest{Sender: ghost, RoomID: w.roomID, Target: ghost, Membership: "join"}); err != nil {
		t.Fatal(err)
	}
	return w
}

// settle waits until the room's set-up has been delivered: a message
// sent after it arrives.
func (w *queueWorld) settle(t *testing.T) {
	t.Helper()
	w.say(t, "ready")
	w.as.waitFor(t, "set-up delivered", func() bool { return strings.HasSuffix(texts(w.as.delivered()), "ready") })
	w.as.waitFor(t, "set-up acknowledged", func() bool { return w.reg.Health("br").Queued == 0 })
	w.as.mu.Lock()
	w.as.seen = nil
	w.as.mu.Unlock()
}

func (w *queueWorld) say(t *testing.T, text string) {
	t.Helper()
	_, err := w.rooms.Send(context.Background(), room.SendRequest{Sender: alice, Device: "D", RoomID: w.roomID, Type: "m.room.message",
		Content: json.RawMessage(fmt.Sprintf(`{"msgtype":"m.text","body":%q}`, text)), TxnID: text})
	if err != nil {
		t.Fatal(err)
	}
}

// texts is what the appservice acknowledged, without the room set-up's
// state events (which have no body).
func texts(all []string) string {
	var out []string
	for _, b := range all {
		if b != "" {
			out = append(out, b)
		}
	}
	return strings.Join(out, "|")
}

// TestQueueRetriesSameTransaction: while the appservice fails, the queue
// retries the same transaction ID with exactly the same events, then
// sends what came later in a new one; everything arrives once, in order,
// with the hs_token as the bearer token.
func TestQueueRetriesSameTransaction(t *testing.T) {
	w := setupQueueWorld(t, nil)
	w.settle(t)
	w.as.setMode("fail")
	w.say(t, "m1")
	w.as.waitFor(t, "a failed attempt", func() bool {
		w.as.mu.Lock()
		defer w.as.mu.Unlock()
		return len(w.as.seen) > 0 && w.as.seen[len(w.as.seen)-1].Mode == "fail"
	})
	w.say(t, "m2")
	w.say(t, "m3")
	w.as.waitFor(t, "a second failed attempt", func() bool { return len(w.as.failedIDs()) >= 2 })
	w.as.setMode("ok")
	w.as.waitFor(t, "all delivered", func() bool { return strings.HasSuffix(texts(w.as.delivered()), "m3") })
	if got := texts(w.as.delivered()); got != "m1|m2|m3" {
		t.Fatalf("delivered %q", got)
	}
	w.as.mu.Lock()
	defer w.as.mu.Unlock()
	var failedID string
	bodies := map[string]string{} // txn ID → its events: never two versions
	for _, s := range w.as.seen {
		if s.Auth != "Bearer hs_br" {
			t.Fatalf("Authorization %q", s.Auth)
		}
		if b, ok := bodies[s.ID]; ok && b != texts(s.Bodies) {
			t.Fatalf("txn ID %s sent with %q, then with %q", s.ID, b, texts(s.Bodies))
		}
		bodies[s.ID] = texts(s.Bodies)
		if s.Mode == "fail" {
			if failedID != "" && s.ID != failedID {
				t.Fatalf("a retry changed the txn ID: %q then %q", failedID, s.ID)
			}
			failedID = s.ID
		}
	}
	if bodies[failedID] != "m1" {
		t.Fatalf("the failed transaction carried %q, want m1", bodies[failedID])
	}
}

// TestQueueSurvivesRestart: events queued while the appservice was down
// are delivered by the next process over the same file, once, in order,
// and the health shows the failure meanwhile.
func TestQueueSurvivesRestart(t *testing.T) {
	w := setupQueueWorld(t, nil)
	w.settle(t)
	w.as.setMode("fail")
	for _, m := range []string{"a", "b", "c"} {
		w.say(t, m)
	}
	w.as.waitFor(t, "a failed attempt", func() bool {
		w.as.mu.Lock()
		defer w.as.mu.Unlock()
		return len(w.as.seen) > 0 && w.as.seen[len(w.as.seen)-1].Mode == "fail"
	})
	w.as.waitFor(t, "the failure and 3 queued in the health", func() bool {
		h := w.reg.Health("br")
		return strings.Contains(h.LastError, "500") && h.Queued == 3
	})
	sec := w.reg.secrets
	w.close()
	w.db = nil

	w.as.setMode("ok")
	w2 := newQueueWorld(t, w.path, sec, w.as)
	// Stopped (no queue running), as `hearth appservice list` sees it.
	if h := w2.reg.Health("br"); h.Queued != 3 || !strings.Contains(h.LastError, "500") {
		t.Fatalf("health with no queue running: %+v", h)
	}
	w2.start(t, nil)
	defer w2.close()
	w.as.waitFor(t, "delivered after restart", func() bool { return strings.HasSuffix(texts(w.as.delivered()), "c") })
	if got := texts(w.as.delivered()); got != "a|b|c" {
		t.Fatalf("delivered %q", got)
	}
	w.as.waitFor(t, "a clean health after delivery", func() bool {
		h := w2.reg.Health("br")
		return h.Queued == 0 && h.LastError == "" && !h.LastSuccess.IsZero()
	})
}

// TestQueueSlowAppservice: an appservice that never answers does not
// hold up the people sending; once it answers (here: garbage with a
// 200, which acknowledges), the events arrive in order.
func TestQueueSlowAppservice(t *testing.T) {
	w := setupQueueWorld(t, nil)
	w.settle(t)
	w.as.setMode("hang")
	for i := range 5 {
		w.say(t, fmt.Sprint("s", i)) // returns although the appservice hangs
	}
	w.as.setMode("garbage")
	w.as.waitFor(t, "delivered", func() bool { return strings.HasSuffix(texts(w.as.delivered()), "s4") })
	if got := texts(w.as.delivered()); got != "s0|s1|s2|s3|s4" {
		t.Fatalf("delivered %q", got)
	}
}

// TestQueueBounded: an appservice that is down holds at most maxQueued
// events; later ones are dropped and the health says so.
func TestQueueBounded(t *testing.T) {
	w := setupQueueWorld(t, nil)
	w.settle(t)
	w.q.mu.Lock()
	w.q.maxQueued = 2
	w.q.mu.Unlock()
	w.as.setMode("fail")
	for _, m := range []string{"q1", "q2", "q3", "q4"} {
		w.say(t, m)
	}
	w.as.waitFor(t, "the drop recorded", func() bool { return w.reg.Health("br").Dropped == 2 })
	if h := w.reg.Health("br"); h.Queued != 2 {
		t.Fatalf("queued %d, want 2", h.Queued)
	}
	w.as.setMode("ok")
	w.as.waitFor(t, "delivered", func() bool { return strings.HasSuffix(texts(w.as.delivered()), "q2") })
	if got := texts(w.as.delivered()); got != "q1|q2" {
		t.Fatalf("delivered %q", got)
	}
}

// TestQueueToDevice: to-device messages for an appservice user's devices
// go in its transactions (MSC4203), "*" expanded to every device; those
// for other users do not, and typing in its room goes as ephemeral.
func TestQueueToDevice(t *testing.T) {
	w := setupQueueWorld(t, nil)
	w.settle(t)
	ghost := "@br_ghost:" + qServer
	devices := func(userID string) ([]string, error) { return []string{"D1", "D2"}, nil }
	err := w.q.QueueToDevice(context.Background(), alice, "m.room_key_request", map[string]map[string]json.RawMessage{
		ghost:             {"*": json.RawMessage(`{}`)},
		"@bob:" + qServer: {"X": json.RawMessage(`{}`)},
	}, devices)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.q.QueueEphemeral(context.Background(), w.roomID, []string{alice, ghost},
		map[string]any{"type": "m.typing", "room_id": w.roomID, "content": map[string]any{"user_ids": []string{alice}}}); err != nil {
		t.Fatal(err)
	}
	var got, eph []string
	w.as.waitFor(t, "to-device and typing delivered", func() bool {
		w.as.mu.Lock()
		defer w.as.mu.Unlock()
		got, eph = nil, nil
		for _, s := range w.as.seen {
			got = append(got, s.ToDevice...)
			eph = append(eph, s.Ephemeral...)
		}
		return len(got) >= 2 && len(eph) >= 1
	})
	want := "m.room_key_request " + ghost + " D1|m.room_key_request " + ghost + " D2"
	if strings.Join(got, "|") != want || strings.Join(eph, "|") != "m.typing" {
		t.Fatalf("to-device %q (want %q), ephemeral %q", got, want, eph)
	}
}

// TestRegistryChangeDuringAWrite: the follower reads the registry inside
// its store writes, and the store has one writer, so Remove and Add must
// not hold the registry's lock while they wait for the store: a removal
// made while such a write runs used to hang every later write.
func TestRegistryChangeDuringAWrite(t *testing.T) {
	w := setupQueueWorld(t, nil)
	removed := make(chan error, 1)
	wrote := make(chan error, 1)
	go func() {
		wrote <- w.db.Update(context.Background(), func(tx *store.Tx) error {
			go func() { removed <- w.reg.Remove(context.Background(), "br") }()
			time.Sleep(200 * time.Millisecond) // Remove is waiting for this write now
			w.reg.Get("br")
			return nil
		})
	}()
	for _, ch := range []chan error{wrote, removed} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a registry change and a store write wait for each other")
		}
	}
}

// TestQueueReaddedStartsEmpty: an appservice removed with a full queue and
// added again under the same id queues again (its count went with it).
func TestQueueReaddedStartsEmpty(t *testing.T) {
	w := setupQueueWorld(t, nil)
	w.settle(t)
	w.q.mu.Lock()
	w.q.maxQueued = 2
	w.q.mu.Unlock()
	w.as.setMode("fail")
	for _, m := range []string{"q1", "q2", "q3"} {
		w.say(t, m)
	}
	w.as.waitFor(t, "the queue full", func() bool { return w.reg.Health("br").Dropped == 1 })
	if err := w.reg.Remove(context.Background(), "br"); err != nil {
		t.Fatal(err)
	}
	y := strings.Replace(regYAML("br", "br", true), "http://127.0.0.1:29318", w.as.URL, 1)
	if err := w.reg.Add(context.Background(), mustParse(t, y)); err != nil {
		t.Fatal(err)
	}
	w.as.setMode("ok")
	w.say(t, "after")
	w.as.waitFor(t, "delivered after re-adding", func() bool { return strings.HasSuffix(texts(w.as.delivered()), "after") })
}
