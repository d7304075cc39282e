package push

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// gateway is a push gateway on 127.0.0.1 (Push Gateway API
// §"POST /_matrix/push/v1/notify") that answers with reply and hands each
// notification to the test.
type gateway struct {
	*httptest.Server
	got   chan map[string]any
	reply atomic.Value // func(n int) (status int, body string)
	hits  atomic.Int32
}

func newGateway(t *testing.T) *gateway {
	g := &gateway{got: make(chan map[string]any, 16)}
	g.reply.Store(func(int) (int, string) { return 200, `{"rejected":[]}` })
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/_matrix/push/v1/notify" || r.Method != "POST" {
			http.Error(w, "wrong path", 404)
			return
		}
		var body struct {
			Notification map[string]any `json:"notification"`
		}
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &body)
		status, resp := g.reply.Load().(func(int) (int, string))(int(g.hits.Add(1)))
		w.WriteHeader(status)
		io.WriteString(w, resp)
		body.Notification["_status"] = status
		g.got <- body.Notification
	}))
	t.Cleanup(g.Close)
	return g
}

func (g *gateway) next(t *testing.T) map[string]any {
	t.Helper()
	select {
	case n := <-g.got:
		return n
	case <-time.After(10 * time.Second):
		t.Fatal("the gateway got nothing")
		return nil
	}
}

func httpKind() *string { k := "http"; return &k }

func (g *gateway) pusher(pushkey string) SetRequest {
	return SetRequest{Kind: httpKind(), Pusher: Pusher{AppID: "org.example.app", Pushkey: pushkey,
		AppDisplayName: "App", DeviceDisplayName: "Phone", Lang: "en",
		Data: map[string]any{"url": g.URL + "/_matrix/push/v1/notify", "extra": "kept"}}}
}

// A failed delivery (500) is retried with backoff; the queue, attempt
// count and retry time survive a restart, and the next daemon delivers.
func TestDeliveryRetriesAndSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	g := newGateway(t)
	g.reply.Store(func(int) (int, string) { return 500, "down" })
	e := openEnv(t, dir)
	alice, bob := user("alice"), user("bob")
	opts := Options{AllowPrivateGateways: true, RetryBase: 20 * time.Millisecond}
	s := New(e.db, e.rooms, opts)
	s.Start()
	roomID := e.publicRoom(t, alice, []string{bob})
	if err := s.SetPusher(context.Background(), alice, g.pusher("key-1")); err != nil {
		t.Fatal(err)
	}
	eventID := e.say(t, bob, roomID, "1", text("hello there"))
	first, second := g.next(t), g.next(t) // the first try and one retry, both refused
	for _, n := range []map[string]any{first, second} {
		if n["event_id"] != eventID || n["_status"] != 500 {
			t.Fatalf("attempt: %v", n)
		}
	}
	s.Stop()
	var q queued
	e.db.View(func(tx *store.Tx) error {
		c := tx.Cursor(store.PushQueue)
		k, v := c.First()
		if k == nil {
			t.Fatal("the queue is empty after failed deliveries")
		}
		return json.Unmarshal(v, &q)
	})
	if q.Attempts < 1 || q.NextAt == 0 {
		t.Fatalf("queued entry %+v: attempts and retry time not stored", q)
	}
	e.db.Close()

	g.reply.Store(func(int) (int, string) { return 200, `{"rejected":[]}` })
	e = openEnv(t, dir)
	defer e.db.Close()
	s = New(e.db, e.rooms, opts)
	s.Start()
	defer s.Stop()
	n := g.next(t)
	if n["event_id"] != eventID || n["_status"] != 200 {
		t.Fatalf("after the restart: %v", n)
	}
	// The notification object carries what the Push Gateway API lists.
	if n["room_id"] != roomID || n["type"] != "m.room.message" || n["sender"] != bob || n["prio"] != "high" ||
		n["content"].(map[string]any)["body"] != "hello there" || n["sender_display_name"] != "Dr bobington" {
		t.Fatalf("notification fields: %v", n)
	}
	dev := n["devices"].([]any)[0].(map[string]any)
	if dev["app_id"] != "org.example.app" || dev["pushkey"] != "key-1" || dev["data"].(map[string]any)["extra"] != "kept" ||
		dev["data"].(map[string]any)["url"] != nil || dev["pushkey_ts"] == nil ||
		dev["tweaks"].(map[string]any)["sound"] != "default" {
		t.Fatalf("device: %v", dev)
	}
	if n["counts"].(map[string]any)["unread"] != float64(1) {
		t.Fatalf("counts: %v", n["counts"])
	}
	// Delivered means dequeued: the next event is the next delivery.
	second2 := e.say(t, bob, roomID, "2", text("again"))
	if n := g.next(t); n["event_id"] != second2 {
		t.Fatalf("next delivery %v, want %s", n["event_id"], second2)
	}
}

// A pushkey the gateway rejects loses its pusher (Push Gateway API
// "rejected"); event_id_only pushers get no event details.
func TestRejectedPushkeyRemovesPusher(t *testing.T) {
	g := newGateway(t)
	g.reply.Store(func(int) (int, string) { return 200, `{"rejected":["key-2"]}` })
	e := openEnv(t, t.TempDir())
	defer e.db.Close()
	s := New(e.db, e.rooms, Options{AllowPrivateGateways: true})
	s.Start()
	defer s.Stop()
	alice, bob := user("alice"), user("bob")
	roomID := e.publicRoom(t, alice, []string{bob})
	req := g.pusher("key-2")
	req.Data["format"] = "event_id_only"
	if err := s.SetPusher(context.Background(), alice, req); err != nil {
		t.Fatal(err)
	}
	e.say(t, bob, roomID, "1", text("hi"))
	n := g.next(t)
	if n["content"] != nil || n["sender"] != nil || n["event_id"] == nil {
		t.Fatalf("event_id_only notification: %v", n)
	}
	// The removal is written after the gateway answered; a second event
	// queues nothing once the pusher is gone, which the settled evaluator
	// shows by an empty queue.
	for i := range 100 {
		ps, _ := s.Pushers(alice)
		if len(ps) == 0 {
			break
		}
		if i == 99 {
			t.Fatal("the rejected pusher was kept")
		}
		e.say(t, bob, roomID, "x"+string(rune('a'+i%26))+string(rune('a'+i/26)), text("more"))
		e.settle(t, s)
	}
}

// The real address policy (no test option) refuses gateways on loopback,
// private and link-local addresses, and bad URLs, storing nothing; its
// HTTP client refuses to dial loopback even if a name resolved there.
func TestPusherURLPolicy(t *testing.T) {
	e := openEnv(t, t.TempDir())
	defer e.db.Close()
	s := New(e.db, e.rooms, Options{})
	g := newGateway(t)
	for _, u := range []string{g.URL + "/_matrix/push/v1/notify", "http://localhost:8080/x", "http://127.0.0.1/x",
		"https://[::1]/x", "http://10.1.2.3/x", "http://192.168.1.1/x", "http://169.254.169.254/latest",
		"http://[fe80::1]/x", "http://0.0.0.0/x", "http://0.1.2.3/x", "http://255.255.255.255/x", "http://[::ffff:127.0.0.1]/x", "ftp://push.example.org/x", "push.example.org", "http:///x"} {
		req := g.pusher("k")
		req.Data["url"] = u
		err := s.SetPusher(context.Background(), user("alice"), req)
		var me *matrixerr.Error
		if !errors.As(err, &me) || me.Code != "M_INVALID_PARAM" {
			t.Errorf("url %q: %v, want M_INVALID_PARAM", u, err)
		}
	}
	req := g.pusher("k")
	delete(req.Data, "url")
	var me *matrixerr.Error
	if err := s.SetPusher(context.Background(), user("alice"), req); !errors.As(err, &me) || me.Code != "M_MISSING_PARAM" {
		t.Errorf("no url: %v", err)
	}
	if ps, _ := s.Pushers(user("alice")); len(ps) != 0 {
		t.Fatalf("refused pushers were stored: %v", ps)
	}
	if _, _, err := s.post(context.Background(), g.URL+"/_matrix/push/v1/notify", []byte(`{}`)); err == nil || g.hits.Load() != 0 {
		t.Fatalf("the production client reached a loopback gateway (err %v)", err)
	}
	if err := s.checkGatewayURL(context.Background(), "https://203.0.113.9/_matrix/push/v1/notify"); err != nil {
		t.Fatalf("a public address was refused: %v", err)
	}
}
