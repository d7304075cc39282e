package matrix_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/internal/search"
)

// withSearch starts a search index on the test server, as daemon.Start
// does, and returns a function that waits until it has caught up.
func withSearch(t *testing.T, ts *testServer) func() {
	ix := search.New(ts.DB, ts.Rooms, ts.Rooms)
	ix.Start()
	t.Cleanup(ix.Stop) // runs before the store closes
	ts.API.SetSearch(ix)
	return func() {
		t.Helper()
		pos, _ := ts.Rooms.Pos()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := ix.WaitFor(ctx, pos); err != nil {
			t.Fatalf("index did not catch up: %v", err)
		}
	}
}

func TestSearchAPI(t *testing.T) {
	sp := loadSpec(t)
	ts := newTestServer(t)
	caughtUp := withSearch(t, ts)
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	roomID := ts.createRoom(t, alice, map[string]any{"preset": "public_chat", "name": "Mars talk"})
	ts.send(t, alice, roomID, "1", "before the hit")
	hit := ts.send(t, alice, roomID, "2", "Where are the Martians?")
	ts.send(t, alice, roomID, "3", "after the hit")
	ts.send(t, alice, roomID, "4", "martians again")
	caughtUp()

	body := map[string]any{"search_categories": map[string]any{"room_events": map[string]any{
		"search_term": "martians", "order_by": "recent", "filter": map[string]any{"limit": 1},
		"event_context": map[string]any{"before_limit": 1, "after_limit": 1, "include_profile": true},
		"include_state": true, "groupings": map[string]any{"group_by": []any{map[string]any{"key": "room_id"}}},
	}}}
	r := ts.do(t, "POST", "/_matrix/client/v3/search", alice.Token, body)
	r.wantStatus(t, 200)
	sp.check(t, r)
	re := r.json(t)["search_categories"].(map[string]any)["room_events"].(map[string]any)
	if re["count"].(float64) != 2 || re["next_batch"] == nil {
		t.Fatalf("page 1: %v", re)
	}
	if _, ok := re["state"].(map[string]any)[roomID]; !ok {
		t.Fatalf("include_state lacks the room: %v", re["state"])
	}
	r = ts.do(t, "POST", "/_matrix/client/v3/search?next_batch="+url.QueryEscape(re["next_batch"].(string)), alice.Token, body)
	r.wantStatus(t, 200)
	sp.check(t, r)
	re = r.json(t)["search_categories"].(map[string]any)["room_events"].(map[string]any)
	results := re["results"].([]any)
	// A full page carries next_batch even when it holds the last hit; the
	// page after it is empty and has none.
	if len(results) != 1 || re["next_batch"] == nil {
		t.Fatalf("page 2: %v", re)
	}
	r3 := ts.do(t, "POST", "/_matrix/client/v3/search?next_batch="+url.QueryEscape(re["next_batch"].(string)), alice.Token, body)
	r3.wantStatus(t, 200)
	re3 := r3.json(t)["search_categories"].(map[string]any)["room_events"].(map[string]any)
	if len(re3["results"].([]any)) != 0 || re3["next_batch"] != nil {
		t.Fatalf("page 3: %v", re3)
	}
	res := results[0].(map[string]any)
	if res["result"].(map[string]any)["event_id"] != hit {
		t.Fatalf("page 2 holds %v, want the older hit", res["result"])
	}
	ctx := res["context"].(map[string]any)
	if len(ctx["events_before"].([]any)) != 1 || len(ctx["events_after"].([]any)) != 1 || ctx["profile_info"] == nil {
		t.Fatalf("context: %v", ctx)
	}
	// Room names are searchable under content.name.
	r = ts.do(t, "POST", "/_matrix/client/v3/search", alice.Token, map[string]any{"search_categories": map[string]any{
		"room_events": map[string]any{"search_term": "mars", "keys": []string{"content.name"}}}})
	r.wantStatus(t, 200)
	if n := r.json(t)["search_categories"].(map[string]any)["room_events"].(map[string]any)["count"]; n != float64(1) {
		t.Fatalf("name search count %v", n)
	}
	// Bob was never in the room: nothing.
	r = ts.do(t, "POST", "/_matrix/client/v3/search", bob.Token, body)
	r.wantStatus(t, 200)
	if n := r.json(t)["search_categories"].(map[string]any)["room_events"].(map[string]any)["count"]; n != float64(0) {
		t.Fatalf("a non-member got %v results", n)
	}
}

func TestSearchBadInput(t *testing.T) {
	ts := newTestServer(t)
	withSearch(t, ts)
	alice := ts.register(t, "alice")
	for name, tc := range map[string]struct {
		path    string
		body    any
		errcode string
	}{
		"no categories":  {"", map[string]any{}, "M_BAD_JSON"},
		"no term":        {"", map[string]any{"search_categories": map[string]any{"room_events": map[string]any{}}}, "M_BAD_JSON"},
		"bad order":      {"", map[string]any{"search_categories": map[string]any{"room_events": map[string]any{"search_term": "x", "order_by": "size"}}}, "M_INVALID_PARAM"},
		"bad key":        {"", map[string]any{"search_categories": map[string]any{"room_events": map[string]any{"search_term": "x", "keys": []string{"content.url"}}}}, "M_INVALID_PARAM"},
		"bad term type":  {"", map[string]any{"search_categories": map[string]any{"room_events": map[string]any{"search_term": 5}}}, "M_BAD_JSON"},
		"bad next_batch": {"?next_batch=nonsense", map[string]any{"search_categories": map[string]any{"room_events": map[string]any{"search_term": "x"}}}, "M_INVALID_PARAM"},
	} {
		t.Run(name, func(t *testing.T) {
			ts.do(t, "POST", "/_matrix/client/v3/search"+tc.path, alice.Token, tc.body).wantError(t, 400, tc.errcode)
		})
	}
}

func TestThreadsAPI(t *testing.T) {
	sp := loadSpec(t)
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	roomID := ts.createRoom(t, alice, nil)
	root := ts.send(t, alice, roomID, "1", "root")
	r := ts.do(t, "PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/send/m.room.message/2", alice.Token, map[string]any{
		"msgtype": "m.text", "body": "reply", "m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}})
	r.wantStatus(t, 200)
	reply := r.str(t, "event_id")

	path := "/_matrix/client/v1/rooms/" + url.PathEscape(roomID) + "/threads"
	r = ts.do(t, "GET", path+"?include=participated", alice.Token, nil)
	r.wantStatus(t, 200)
	sp.check(t, r)
	chunk := r.json(t)["chunk"].([]any)
	if len(chunk) != 1 {
		t.Fatalf("threads: %s", r.Body)
	}
	ev := chunk[0].(map[string]any)
	th := ev["unsigned"].(map[string]any)["m.relations"].(map[string]any)["m.thread"].(map[string]any)
	if ev["event_id"] != root || th["count"] != float64(1) || th["latest_event"].(map[string]any)["event_id"] != reply || th["current_user_participated"] != true {
		t.Fatalf("thread root: %s", r.Body)
	}
	// The same bundle on /event.
	r = ts.do(t, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/event/"+url.PathEscape(root), alice.Token, nil)
	r.wantStatus(t, 200)
	sp.check(t, r)
	if r.json(t)["unsigned"].(map[string]any)["m.relations"] == nil {
		t.Fatalf("/event lacks m.relations: %s", r.Body)
	}
	ts.do(t, "GET", path+"?include=mine", alice.Token, nil).wantError(t, 400, "M_INVALID_PARAM")
	ts.do(t, "GET", path+"?limit=0", alice.Token, nil).wantError(t, 400, "M_INVALID_PARAM")
	ts.do(t, "GET", path+"?from=zzz", alice.Token, nil).wantError(t, 400, "M_INVALID_PARAM")
	bob := ts.register(t, "bob")
	ts.do(t, "GET", path, bob.Token, nil).wantError(t, 403, "M_FORBIDDEN")
}
