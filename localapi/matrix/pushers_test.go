package matrix_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestPushersAndDelivery: POST /pushers/set validates and stores, GET
// /pushers lists, a message to the user reaches the gateway as the Push
// Gateway API describes, and kind null removes the pusher.
func TestPushersAndDelivery(t *testing.T) {
	ps := newPushServer(t)
	c := specChecker{ps.testServer, loadSpec(t)}
	got := make(chan map[string]any, 8)
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Notification map[string]any `json:"notification"`
		}
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &body)
		io.WriteString(w, `{"rejected":[]}`)
		got <- body.Notification
	}))
	defer gw.Close()
	alice, bob := ps.register(t, "alice"), ps.register(t, "bob")
	pusher := map[string]any{"kind": "http", "app_id": "org.example.app", "pushkey": "pk1",
		"app_display_name": "Example", "device_display_name": "Phone", "lang": "en",
		"data": map[string]any{"url": gw.URL + "/_matrix/push/v1/notify", "format": "event_id_only"}}

	// Bad input first: nothing may be stored.
	for _, tc := range []struct {
		mutate func(map[string]any)
		code   string
	}{
		{func(p map[string]any) { p["data"] = map[string]any{} }, "M_MISSING_PARAM"},
		{func(p map[string]any) { p["data"] = map[string]any{"url": "ftp://gw.example/x"} }, "M_INVALID_PARAM"},
		{func(p map[string]any) { p["kind"] = "email" }, "M_INVALID_PARAM"},
		{func(p map[string]any) { delete(p, "app_id") }, "M_MISSING_PARAM"},
		{func(p map[string]any) { p["data"] = "x" }, "M_BAD_JSON"},
	} {
		p := map[string]any{}
		for k, v := range pusher {
			p[k] = v
		}
		tc.mutate(p)
		c.call(t, "POST", pushV3+"/pushers/set", alice.Token, p).wantError(t, 400, tc.code)
	}
	r := c.call(t, "GET", pushV3+"/pushers", alice.Token, nil)
	if strings.TrimSpace(string(r.Body)) != `{"pushers":[]}` {
		t.Fatalf("refused pushers were stored: %s", r.Body)
	}

	c.call(t, "POST", pushV3+"/pushers/set", alice.Token, pusher).wantStatus(t, 200)
	r = c.call(t, "GET", pushV3+"/pushers", alice.Token, nil)
	var list struct {
		Pushers []map[string]any `json:"pushers"`
	}
	json.Unmarshal(r.Body, &list)
	if len(list.Pushers) != 1 || list.Pushers[0]["pushkey"] != "pk1" || list.Pushers[0]["kind"] != "http" {
		t.Fatalf("GET /pushers: %s", r.Body)
	}

	dm := ps.createRoom(t, alice, map[string]any{"preset": "private_chat", "invite": []string{bob.ID}})
	covJoin(t, ps.testServer, bob, dm)
	eventID := ps.send(t, bob, dm, "p1", "are you there?")
	select {
	case n := <-got:
		if n["event_id"] != eventID || n["room_id"] != dm || n["content"] != nil {
			t.Fatalf("notification: %v", n)
		}
		dev := n["devices"].([]any)[0].(map[string]any)
		if dev["pushkey"] != "pk1" || dev["app_id"] != "org.example.app" {
			t.Fatalf("device: %v", dev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the gateway got no notification")
	}

	c.call(t, "POST", pushV3+"/pushers/set", alice.Token, map[string]any{"kind": nil, "app_id": "org.example.app",
		"pushkey": "pk1"}).wantStatus(t, 200)
	if r := c.call(t, "GET", pushV3+"/pushers", alice.Token, nil); strings.TrimSpace(string(r.Body)) != `{"pushers":[]}` {
		t.Fatalf("after delete: %s", r.Body)
	}
}
