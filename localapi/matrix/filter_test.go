package matrix_test

import (
	"encoding/json"
	"net/url"
	"testing"
)

// syncWith runs an initial /sync as u with an inline filter.
func syncWith(t *testing.T, ts *testServer, u *testUser, filter string) map[string]any {
	t.Helper()
	r := ts.do(t, "GET", "/_matrix/client/v3/sync?filter="+url.QueryEscape(filter), u.Token, nil)
	r.wantStatus(t, 200)
	return r.json(t)
}

func TestSyncFilterSections(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	roomID := ts.createRoom(t, alice, map[string]any{"name": "filters"})
	ts.send(t, alice, roomID, "1", "hello")
	for _, typ := range []string{"org.example.keep", "org.example.drop"} {
		ts.do(t, "PUT", "/_matrix/client/v3/user/"+url.PathEscape(alice.ID)+"/account_data/"+typ, alice.Token,
			map[string]any{"x": 1}).wantStatus(t, 200)
	}
	ts.do(t, "PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/typing/"+url.PathEscape(alice.ID), alice.Token,
		map[string]any{"typing": true, "timeout": 30000}).wantStatus(t, 200)

	t.Run("event_fields", func(t *testing.T) {
		resp := syncWith(t, ts, alice, `{"event_fields":["type","content.body"]}`)
		tl := joinedIn(t, resp, roomID)["timeline"].(map[string]any)["events"].([]any)
		last := tl[len(tl)-1].(map[string]any)
		b, _ := json.Marshal(last)
		if string(b) != `{"content":{"body":"hello"},"type":"m.room.message"}` {
			t.Fatalf("projected event: %s", b)
		}
	})
	t.Run("account_data types", func(t *testing.T) {
		resp := syncWith(t, ts, alice, `{"account_data":{"not_types":["org.example.drop"]}}`)
		types := map[string]bool{}
		for _, ev := range resp["account_data"].(map[string]any)["events"].([]any) {
			types[ev.(map[string]any)["type"].(string)] = true
		}
		if !types["org.example.keep"] || types["org.example.drop"] {
			t.Fatalf("account data types %v", types)
		}
	})
	t.Run("presence off", func(t *testing.T) {
		resp := syncWith(t, ts, alice, `{"presence":{"types":["none"]}}`)
		if evs := resp["presence"].(map[string]any)["events"].([]any); len(evs) != 0 {
			t.Fatalf("presence events despite the filter: %v", evs)
		}
	})
	t.Run("ephemeral", func(t *testing.T) {
		eph := func(filter string) []any {
			return joinedIn(t, syncWith(t, ts, alice, filter), roomID)["ephemeral"].(map[string]any)["events"].([]any)
		}
		if evs := eph(`{}`); len(evs) == 0 {
			t.Fatal("no typing event without a filter")
		}
		if evs := eph(`{"room":{"ephemeral":{"limit":0}}}`); len(evs) != 0 {
			t.Fatalf("ephemeral limit 0 still sent %v", evs)
		}
		if evs := eph(`{"room":{"ephemeral":{"not_types":["m.typing"]}}}`); len(evs) != 0 {
			t.Fatalf("not_types m.typing still sent %v", evs)
		}
	})
}

func joinedIn(t *testing.T, resp map[string]any, roomID string) map[string]any {
	t.Helper()
	r, ok := resp["rooms"].(map[string]any)["join"].(map[string]any)[roomID].(map[string]any)
	if !ok {
		t.Fatalf("room %s missing from sync", roomID)
	}
	return r
}
