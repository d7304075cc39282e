package matrix_test

import (
	"net/url"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/internal/delayed"
	"github.com/hearth-chat/hearth/localapi/matrix"
)

const msc4140 = "/_matrix/client/unstable/org.matrix.msc4140"

// withDelayed wires a delayed-events service over the test server's
// store, as the daemon does.
func withDelayed(t *testing.T, ts *testServer, maxDelay time.Duration) *delayed.Service {
	t.Helper()
	svc := delayed.New(ts.DB, ts.Rooms, delayed.Config{MaxDelay: maxDelay})
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close) // before the store closes (cleanups run last first)
	ts.API.SetDelayed(svc)
	return svc
}

func stateURL(roomID, typ, key string) string {
	return "/_matrix/client/v3/rooms/" + url.PathEscape(roomID) + "/state/" + typ + "/" + url.PathEscape(key)
}

// TestDelayedVersionsFlag: /versions offers org.matrix.msc4140 only when
// delayed events can be scheduled.
func TestDelayedVersionsFlag(t *testing.T) {
	for _, c := range []struct {
		wire bool
		max  time.Duration
		want bool
	}{{false, 0, false}, {true, 0, false}, {true, time.Hour, true}} {
		ts := newTestServer(t)
		if c.wire {
			withDelayed(t, ts, c.max)
		}
		f := ts.do(t, "GET", "/_matrix/client/versions", "", nil).json(t)["unstable_features"].(map[string]any)
		if got, ok := f["org.matrix.msc4140"].(bool); !ok || got != c.want {
			t.Errorf("wired %v, max %v: org.matrix.msc4140 = %v, want %v", c.wire, c.max, f["org.matrix.msc4140"], c.want)
		}
	}
}

// TestDelayedStateThroughTheAPI: the calls Element Call's matrix-js-sdk
// makes (the delay parameter on PUT /state, the action in the body) and
// the current MSC's (the delayed_event endpoint, the action in the path,
// unauthenticated) schedule, list, restart, send and cancel.
func TestDelayedStateThroughTheAPI(t *testing.T) {
	ts := newTestServer(t)
	withDelayed(t, ts, 24*time.Hour)
	alice := ts.register(t, "alice")
	roomID := ts.createRoom(t, alice, nil)

	r := ts.do(t, "PUT", stateURL(roomID, "org.example.call", "_"+alice.ID)+"?org.matrix.msc4140.delay=3600000", alice.Token, map[string]any{})
	r.wantStatus(t, 200)
	id := r.str(t, "delay_id")
	ts.do(t, "GET", stateURL(roomID, "org.example.call", "_"+alice.ID), alice.Token, nil).wantError(t, 404, "M_NOT_FOUND")

	list := ts.do(t, "GET", msc4140+"/delayed_events", alice.Token, nil)
	list.wantStatus(t, 200)
	evs := list.json(t)["delayed_events"].([]any)
	if len(evs) != 1 {
		t.Fatalf("list: %s", list.Body)
	}
	ev := evs[0].(map[string]any)
	if ev["delay_id"] != id || ev["room_id"] != roomID || ev["type"] != "org.example.call" || ev["state_key"] != "_"+alice.ID ||
		ev["delay"] != float64(3600000) || ev["running_since"] == nil || ev["content"] == nil {
		t.Errorf("listed as %v", ev)
	}

	ts.do(t, "POST", msc4140+"/delayed_events/"+id, alice.Token, map[string]any{"action": "restart"}).wantStatus(t, 200)
	ts.do(t, "POST", msc4140+"/delayed_events/"+id+"/send", "", map[string]any{}).wantStatus(t, 200)
	got := ts.do(t, "GET", stateURL(roomID, "org.example.call", "_"+alice.ID)+"?format=event", alice.Token, nil)
	got.wantStatus(t, 200)
	one := ts.do(t, "GET", msc4140+"/delayed_events/"+id, alice.Token, nil)
	one.wantStatus(t, 200)
	if m := one.json(t); m["event_id"] != got.str(t, "event_id") || m["outcome"] != "send" || m["origin_server_ts"] == nil {
		t.Errorf("after send: %s", one.Body)
	}
	if u, _ := got.json(t)["unsigned"].(map[string]any); u["org.matrix.msc4140.delay_id"] != id {
		t.Errorf("sent event's unsigned: %v", u)
	}
	// Sent early, it is no longer in the default list (from now on by
	// send time), which older clients take for the scheduled events.
	if evs := ts.do(t, "GET", msc4140+"/delayed_events", alice.Token, nil).json(t)["delayed_events"].([]any); len(evs) != 0 {
		t.Errorf("default list after sending: %v", evs)
	}

	// The current MSC's endpoint, then a cancel without a token.
	r = ts.do(t, "PUT", msc4140+"/rooms/"+url.PathEscape(roomID)+"/delayed_event/m.room.message/t1", alice.Token,
		map[string]any{"delay": 60000, "content": map[string]any{"msgtype": "m.text", "body": "later"}})
	r.wantStatus(t, 200)
	id2 := r.str(t, "delay_id")
	ts.do(t, "POST", msc4140+"/delayed_events/"+id2+"/cancel", "", nil).wantStatus(t, 200)
	fin := ts.do(t, "GET", msc4140+"/delayed_events?status=finalised&order_by=origin_server_ts&dir=b&since_ts=end", alice.Token, nil)
	fin.wantStatus(t, 200)
	evs = fin.json(t)["delayed_events"].([]any)
	if len(evs) != 2 || evs[0].(map[string]any)["delay_id"] != id2 || evs[0].(map[string]any)["outcome"] != "cancel" {
		t.Errorf("finalised list: %s", fin.Body)
	}
	if sched := ts.do(t, "GET", msc4140+"/delayed_events?status=scheduled", alice.Token, nil).json(t)["delayed_events"].([]any); len(sched) != 0 {
		t.Errorf("still scheduled: %v", sched)
	}
}

// TestDelayedBadInput: every refusal is the spec's error, and nothing is
// scheduled or changed by it.
func TestDelayedBadInput(t *testing.T) {
	ts := newTestServer(t)
	svc := withDelayed(t, ts, time.Minute)
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	roomID := ts.createRoom(t, alice, nil)
	put := func(u *testUser, query string) *response {
		return ts.do(t, "PUT", stateURL(roomID, "org.example.s", "k")+query, u.Token, map[string]any{"a": 1})
	}
	for _, q := range []string{"?org.matrix.msc4140.delay=-1", "?org.matrix.msc4140.delay=0", "?org.matrix.msc4140.delay=abc",
		"?org.matrix.msc4140.delay=1.5", "?org.matrix.msc4140.delay=", "?org.matrix.msc4140.delay=99999999999999999999"} {
		put(alice, q).wantError(t, 400, "M_INVALID_PARAM")
	}
	put(alice, "?org.matrix.msc4140.parent_delay_id=x").wantError(t, 400, "M_INVALID_PARAM")
	m := put(alice, "?org.matrix.msc4140.delay=60001").wantError(t, 400, "M_UNKNOWN")
	if m["org.matrix.msc4140.errcode"] != "M_MAX_DELAY_EXCEEDED" || m["org.matrix.msc4140.max_delay"] != float64(60000) || m["max_delay"] != float64(60000) {
		t.Errorf("over the maximum: %v", m)
	}
	path := msc4140 + "/rooms/" + url.PathEscape(roomID) + "/delayed_event/m.room.message/t1"
	ts.do(t, "PUT", path, alice.Token, map[string]any{"content": map[string]any{}}).wantError(t, 400, "M_MISSING_PARAM")
	ts.do(t, "PUT", path, alice.Token, map[string]any{"delay": "5", "content": map[string]any{}}).wantError(t, 400, "M_INVALID_PARAM")
	ts.do(t, "PUT", path, alice.Token, map[string]any{"delay": 5, "content": []int{1}}).wantError(t, 400, "M_BAD_JSON")
	ts.do(t, "PUT", msc4140+"/rooms/!nope:test.local/delayed_event/m.room.message/t1", alice.Token,
		map[string]any{"delay": 5, "content": map[string]any{}}).wantError(t, 403, "M_FORBIDDEN")
	if all, _ := svc.List(alice.ID); len(all) != 0 {
		t.Fatalf("refused requests stored %d delayed events", len(all))
	}

	r := put(alice, "?org.matrix.msc4140.delay=60000")
	r.wantStatus(t, 200)
	id := r.str(t, "delay_id")
	before, _ := svc.Get(alice.ID, id)
	upd := msc4140 + "/delayed_events/"
	ts.do(t, "POST", upd+id, alice.Token, map[string]any{}).wantError(t, 400, "M_MISSING_PARAM")
	ts.do(t, "POST", upd+id, alice.Token, map[string]any{"action": "explode"}).wantError(t, 400, "M_INVALID_PARAM")
	ts.do(t, "POST", upd+id+"/explode", "", nil).wantError(t, 400, "M_INVALID_PARAM")
	ts.do(t, "POST", upd+"unknown/cancel", "", nil).wantError(t, 404, "M_NOT_FOUND")
	ts.do(t, "POST", upd+"unknown", alice.Token, map[string]any{"action": "send"}).wantError(t, 404, "M_NOT_FOUND")
	for _, a := range []string{"cancel", "restart", "send"} {
		ts.do(t, "POST", upd+id+"/"+a, bob.Token, nil).wantError(t, 404, "M_NOT_FOUND")
	}
	ts.do(t, "POST", upd+id+"/cancel", "not-a-token", nil).wantError(t, 401, "M_UNKNOWN_TOKEN")
	ts.do(t, "GET", msc4140+"/delayed_events/"+id, bob.Token, nil).wantError(t, 404, "M_NOT_FOUND")
	ts.do(t, "GET", msc4140+"/delayed_events", "", nil).wantError(t, 401, "M_MISSING_TOKEN")
	for _, q := range []string{"status=done", "order_by=size", "dir=up", "outcome=maybe", "reason=why", "since_ts=soon", "from=garbage"} {
		ts.do(t, "GET", msc4140+"/delayed_events?"+q, alice.Token, nil).wantError(t, 400, "M_INVALID_PARAM")
	}
	after, _ := svc.Get(alice.ID, id)
	if !after.Scheduled() || after.RunningSince != before.RunningSince {
		t.Errorf("refused actions changed the event: %+v → %+v", before, after)
	}
	if evs := ts.do(t, "GET", msc4140+"/delayed_events", bob.Token, nil).json(t)["delayed_events"].([]any); len(evs) != 0 {
		t.Errorf("bob lists alice's events: %v", evs)
	}
}

// TestDelayedDisabled: with delayed events off the parameter is refused,
// never ignored (which would send the event at once).
func TestDelayedDisabled(t *testing.T) {
	ts := newTestServer(t)
	withDelayed(t, ts, 0)
	alice := ts.register(t, "alice")
	roomID := ts.createRoom(t, alice, nil)
	ts.do(t, "PUT", stateURL(roomID, "org.example.s", "k")+"?org.matrix.msc4140.delay=1000", alice.Token, map[string]any{}).
		wantError(t, 403, "M_FORBIDDEN")
	ts.do(t, "GET", stateURL(roomID, "org.example.s", "k"), alice.Token, nil).wantError(t, 404, "M_NOT_FOUND")
}

// TestDelayedManagementRateLimit: management requests beyond the burst
// get 429 M_LIMIT_EXCEEDED with retry_after_ms, per user (another user
// is not affected), until the bucket leaks.
func TestDelayedManagementRateLimit(t *testing.T) {
	ts := newTestServer(t)
	withDelayed(t, ts, time.Hour)
	now := time.Unix(1_800_000_000, 0)
	ts.API.SetClock(func() time.Time { return now })
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	roomID := ts.createRoom(t, alice, nil)
	r := ts.do(t, "PUT", stateURL(roomID, "org.example.s", "k")+"?org.matrix.msc4140.delay=600000", alice.Token, map[string]any{})
	id := r.str(t, "delay_id")
	for i := range matrix.DelayedMgmtBurst {
		if r := ts.do(t, "POST", msc4140+"/delayed_events/"+id, alice.Token, map[string]any{"action": "restart"}); r.Status != 200 {
			t.Fatalf("restart %d: %d %s", i, r.Status, r.Body)
		}
	}
	m := ts.do(t, "POST", msc4140+"/delayed_events/"+id, alice.Token, map[string]any{"action": "restart"}).wantError(t, 429, "M_LIMIT_EXCEEDED")
	if ms, _ := m["retry_after_ms"].(float64); ms <= 0 {
		t.Errorf("retry_after_ms %v", m["retry_after_ms"])
	}
	ts.do(t, "GET", msc4140+"/delayed_events", bob.Token, nil).wantStatus(t, 200)
	now = now.Add(2 * time.Second)
	ts.do(t, "POST", msc4140+"/delayed_events/"+id, alice.Token, map[string]any{"action": "restart"}).wantStatus(t, 200)
}

// TestDelayedListPages: the list comes in pages joined by next_batch,
// each event once, in send time order.
func TestDelayedListPages(t *testing.T) {
	ts := newTestServer(t)
	withDelayed(t, ts, time.Hour)
	alice := ts.register(t, "alice")
	roomID := ts.createRoom(t, alice, nil)
	const n = 55
	for i := range n {
		ts.do(t, "PUT", stateURL(roomID, "org.example.s", string(rune('A'+i)))+"?org.matrix.msc4140.delay=600000", alice.Token, map[string]any{}).wantStatus(t, 200)
	}
	seen := map[string]bool{}
	from, pages := "", 0
	last := float64(0)
	for {
		q := msc4140 + "/delayed_events"
		if from != "" {
			q += "?from=" + url.QueryEscape(from)
		}
		m := ts.do(t, "GET", q, alice.Token, nil).json(t)
		pages++
		for _, e := range m["delayed_events"].([]any) {
			ev := e.(map[string]any)
			id := ev["delay_id"].(string)
			if seen[id] {
				t.Fatalf("%s listed twice", id)
			}
			seen[id] = true
			due := ev["running_since"].(float64) + ev["delay"].(float64)
			if due < last {
				t.Errorf("out of send time order: %v after %v", due, last)
			}
			last = due
		}
		next, ok := m["next_batch"].(string)
		if !ok {
			break
		}
		from = next
	}
	if len(seen) != n || pages != 2 {
		t.Errorf("%d events in %d pages, want %d in 2", len(seen), pages, n)
	}
}

// TestDelayedActionsWithAnAppserviceToken: an appservice acting as its
// ghost manages the ghost's delayed events with its as_token, as it
// schedules them (the action endpoints used to know only users' tokens).
func TestDelayedActionsWithAnAppserviceToken(t *testing.T) {
	ts := newTestServer(t)
	ts.API.SetAppservices(&oneAppservice{})
	withDelayed(t, ts, time.Hour)
	ts.do(t, "POST", "/_matrix/client/v3/register", "as-secret",
		map[string]any{"type": "m.login.application_service", "username": "br_anna"}).wantStatus(t, 200)
	ghost := "@br_anna:" + testServerName
	roomID := ts.createRoom(t, ts.register(t, "alice"), map[string]any{"preset": "public_chat"})
	asGhost := "?user_id=" + url.QueryEscape(ghost)
	ts.do(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+asGhost, "as-secret", map[string]any{}).wantStatus(t, 200)
	r := ts.do(t, "PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/send/m.room.message/d1"+asGhost+"&org.matrix.msc4140.delay=600000",
		"as-secret", map[string]any{"msgtype": "m.text", "body": "later"})
	r.wantStatus(t, 200)
	id := r.str(t, "delay_id")
	ts.do(t, "POST", msc4140+"/delayed_events/"+id+"/cancel"+asGhost, "as-secret", map[string]any{}).wantStatus(t, 200)
}
