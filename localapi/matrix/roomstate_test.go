package matrix_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"testing"
)

// TestPresence covers PUT/GET /presence/{userId}/status (presence.yaml)
// and presence in /sync.
func TestPresence(t *testing.T) {
	ts := newTestServer(t)
	alice, bob, carol := ts.register(t, "alice"), ts.register(t, "bob"), ts.register(t, "carol")
	rid := ts.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	covJoin(t, ts, bob, rid)
	ts.createRoom(t, carol, nil)
	statusPath := func(u *testUser) string { return covV3 + "/presence/" + url.PathEscape(u.ID) + "/status" }
	get := func(viewer, of *testUser) map[string]any {
		t.Helper()
		r := ts.do(t, "GET", statusPath(of), viewer.Token, nil)
		r.wantStatus(t, 200)
		return r.json(t)
	}

	ts.do(t, "PUT", statusPath(alice), alice.Token, map[string]any{"presence": "online", "status_msg": "Baking bread 🍞"}).wantStatus(t, 200)
	for _, viewer := range []*testUser{alice, bob} {
		p := get(viewer, alice)
		if p["presence"] != "online" || p["status_msg"] != "Baking bread 🍞" {
			t.Errorf("%s reads alice's presence as %v", viewer.ID, p)
		}
	}
	ts.do(t, "GET", statusPath(alice), carol.Token, nil).wantError(t, 403, "M_FORBIDDEN")
	ts.do(t, "PUT", statusPath(alice), bob.Token, map[string]any{"presence": "offline"}).wantError(t, 403, "M_FORBIDDEN")
	ts.do(t, "PUT", statusPath(alice), alice.Token, map[string]any{"presence": "busy"}).wantError(t, 400, "M_INVALID_PARAM")

	bobTok := covSync(t, ts, bob, "")["next_batch"].(string)
	carolTok := covSync(t, ts, carol, "")["next_batch"].(string)
	ts.do(t, "PUT", statusPath(alice), alice.Token, map[string]any{"presence": "unavailable", "status_msg": "out for a walk"}).wantStatus(t, 200)
	if p := get(bob, alice); p["presence"] != "unavailable" || p["status_msg"] != "out for a walk" {
		t.Errorf("alice's presence after the change: %v", p)
	}

	aliceIn := func(resp map[string]any) map[string]any {
		pres, _ := resp["presence"].(map[string]any)
		evs, _ := pres["events"].([]any)
		for _, e := range evs {
			ev := e.(map[string]any)
			if ev["type"] == "m.presence" && ev["sender"] == alice.ID {
				return ev["content"].(map[string]any)
			}
		}
		return nil
	}
	resp := covSync(t, ts, bob, bobTok)
	if c := aliceIn(resp); c == nil || c["presence"] != "unavailable" || c["status_msg"] != "out for a walk" {
		t.Errorf("bob's incremental sync: alice's presence %v, want unavailable with the new status_msg; presence %v", c, resp["presence"])
	}
	if c := aliceIn(covSync(t, ts, carol, carolTok)); c != nil {
		t.Errorf("carol shares no room with alice but her sync has alice's presence %v", c)
	}
	// Nothing changed since: the next incremental sync has no news of alice.
	if c := aliceIn(covSync(t, ts, bob, resp["next_batch"].(string))); c != nil {
		t.Errorf("alice's unchanged presence repeated: %v", c)
	}
}

// TestContextPaging covers GET /rooms/{roomId}/context/{eventId}
// (event_context.yaml) and continuing from its tokens with /messages.
func TestContextPaging(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	rid := ts.createRoom(t, alice, nil)
	var msgs []string
	for i := range 12 {
		msgs = append(msgs, ts.send(t, alice, rid, fmt.Sprintf("m%d", i), fmt.Sprintf("message %d", i)))
	}
	mid := 6
	messages := func(dir, from string, limit int) []string {
		t.Helper()
		q := url.Values{"dir": {dir}, "from": {from}, "limit": {fmt.Sprint(limit)}}
		r := ts.do(t, "GET", covRoomPath(rid)+"/messages?"+q.Encode(), alice.Token, nil)
		r.wantStatus(t, 200)
		return covIDs(t, r.json(t)["chunk"])
	}
	context := func(limit int) map[string]any {
		t.Helper()
		r := ts.do(t, "GET", fmt.Sprintf("%s/context/%s?limit=%d", covRoomPath(rid), url.PathEscape(msgs[mid]), limit), alice.Token, nil)
		r.wantStatus(t, 200)
		m := r.json(t)
		if ev, _ := m["event"].(map[string]any); ev["event_id"] != msgs[mid] {
			t.Fatalf("context limit=%d: event %v, want %s", limit, m["event"], msgs[mid])
		}
		if _, ok := m["state"].([]any); !ok {
			t.Errorf("context limit=%d: state missing", limit)
		}
		return m
	}

	for _, c := range []struct{ limit, before, after int }{{4, 2, 2}, {5, 2, 3}, {1, 0, 1}, {0, 0, 0}} {
		t.Run(fmt.Sprintf("limit=%d", c.limit), func(t *testing.T) {
			m := context(c.limit)
			before, after := covIDs(t, m["events_before"]), covIDs(t, m["events_after"])
			// events_before is newest first, events_after oldest first.
			wantBefore := covReversed(msgs[mid-c.before : mid])
			wantAfter := msgs[mid+1 : mid+1+c.after]
			if !slices.Equal(before, wantBefore) {
				t.Errorf("events_before %v, want %v", before, wantBefore)
			}
			if !slices.Equal(after, wantAfter) {
				t.Errorf("events_after %v, want %v", after, wantAfter)
			}
			start, end := m["start"].(string), m["end"].(string)
			// Paging back from start continues just before events_before.
			older := messages("b", start, 3)
			if want := covReversed(msgs[mid-c.before-3 : mid-c.before]); !slices.Equal(older, want) {
				t.Errorf("/messages dir=b from start: %v, want %v", older, want)
			}
			// Paging forward from end continues just after events_after.
			newer := messages("f", end, 20)
			if want := msgs[mid+1+c.after:]; !slices.Equal(newer, want) {
				t.Errorf("/messages dir=f from end: %v, want %v", newer, want)
			}
		})
	}
}

// TestRedactionPermissions covers the redact power level (redaction.yaml
// and Client-Server API §"Redactions") and redacted state in /state.
func TestRedactionPermissions(t *testing.T) {
	ts := newTestServer(t)
	alice, bob, mod := ts.register(t, "alice"), ts.register(t, "bob"), ts.register(t, "mod")
	rid := ts.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	covJoin(t, ts, bob, rid)
	covJoin(t, ts, mod, rid)
	pl := ts.do(t, "GET", covRoomPath(rid)+"/state/m.room.power_levels", alice.Token, nil)
	pl.wantStatus(t, 200)
	content := pl.json(t)
	content["redact"] = 100
	users := content["users"].(map[string]any)
	users[mod.ID] = 50
	ts.do(t, "PUT", covRoomPath(rid)+"/state/m.room.power_levels", alice.Token, content).wantStatus(t, 200)

	bobMsg := ts.send(t, bob, rid, "b1", "bob's words")
	modMsg := ts.send(t, mod, rid, "m1", "mod's words")
	redact := func(u *testUser, eventID, txn string) *response {
		return ts.do(t, "PUT", covRoomPath(rid)+"/redact/"+url.PathEscape(eventID)+"/"+txn, u.Token, map[string]any{"reason": "test"})
	}
	event := func(id string) map[string]any {
		t.Helper()
		r := ts.do(t, "GET", covRoomPath(rid)+"/event/"+url.PathEscape(id), alice.Token, nil)
		r.wantStatus(t, 200)
		return r.json(t)
	}
	redacted := func(ev map[string]any) bool {
		c, _ := ev["content"].(map[string]any)
		u, _ := ev["unsigned"].(map[string]any)
		return len(c) == 0 && u["redacted_because"] != nil
	}

	redact(mod, bobMsg, "r1").wantError(t, 403, "M_FORBIDDEN")
	redact(bob, modMsg, "r2").wantError(t, 403, "M_FORBIDDEN")
	if ev := event(bobMsg); redacted(ev) {
		t.Fatalf("a refused redaction redacted the event: %v", ev)
	}
	redact(mod, modMsg, "r3").wantStatus(t, 200)
	if ev := event(modMsg); !redacted(ev) {
		t.Errorf("mod's own event after redacting it: %v", ev)
	}
	redact(alice, bobMsg, "r4").wantStatus(t, 200)
	if ev := event(bobMsg); !redacted(ev) {
		t.Errorf("bob's event after alice (100) redacted it: %v", ev)
	}

	// A redacted state event stays in the state with its content stripped.
	topic := ts.do(t, "PUT", covRoomPath(rid)+"/state/m.room.topic", alice.Token, map[string]any{"topic": "secret plans"})
	topic.wantStatus(t, 200)
	topicID := topic.str(t, "event_id")
	redact(alice, topicID, "r5").wantStatus(t, 200)
	r := ts.do(t, "GET", covRoomPath(rid)+"/state", alice.Token, nil)
	r.wantStatus(t, 200)
	var found map[string]any
	for _, e := range covList(t, r.Body) {
		if e["type"] == "m.room.topic" {
			found = e
		}
	}
	if found == nil || found["event_id"] != topicID {
		t.Fatalf("m.room.topic in /state: %v, want the redacted %s", found, topicID)
	}
	if c, _ := found["content"].(map[string]any); len(c) != 0 {
		t.Errorf("redacted topic's content in /state: %v, want {}", c)
	}
	r = ts.do(t, "GET", covRoomPath(rid)+"/state/m.room.topic", alice.Token, nil)
	r.wantStatus(t, 200)
	if c := r.json(t); len(c) != 0 {
		t.Errorf("GET /state/m.room.topic after redaction: %v, want {}", c)
	}
}

// covList decodes a JSON array of objects.
func covList(t *testing.T, body []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("body is not a list of objects: %v: %.300s", err, body)
	}
	return out
}

// TestStateKeys covers PUT/GET /rooms/{roomId}/state/{eventType}/{stateKey}
// (room_state.yaml) with state keys holding '/', '%' and nothing at all.
func TestStateKeys(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	rid := ts.createRoom(t, alice, nil)
	const typ = "org.example.cov"
	keys := []string{"a/b", "/lead", "a/b/c", "50%", "plain", ""}
	for _, k := range keys {
		ts.do(t, "PUT", covRoomPath(rid)+"/state/"+typ+"/"+url.PathEscape(k), alice.Token, map[string]any{"key": k}).wantStatus(t, 200)
	}
	for _, k := range keys {
		r := ts.do(t, "GET", covRoomPath(rid)+"/state/"+typ+"/"+url.PathEscape(k), alice.Token, nil)
		r.wantStatus(t, 200)
		if got := r.json(t)["key"]; got != k {
			t.Errorf("GET state key %q: content key %v", k, got)
		}
	}
	// Without the trailing slash the state key is empty too.
	r := ts.do(t, "GET", covRoomPath(rid)+"/state/"+typ, alice.Token, nil)
	r.wantStatus(t, 200)
	if got := r.json(t)["key"]; got != "" {
		t.Errorf("GET state without a key: content %v, want the empty key's", got)
	}
	ts.do(t, "PUT", covRoomPath(rid)+"/state/"+typ, alice.Token, map[string]any{"key": "", "v": 2}).wantStatus(t, 200)
	r = ts.do(t, "GET", covRoomPath(rid)+"/state/"+typ+"/", alice.Token, nil)
	r.wantStatus(t, 200)
	if got := r.json(t)["v"]; got != float64(2) {
		t.Errorf("empty key after PUT without slash: v=%v, want 2", got)
	}
	// '/' unescaped reaches the same state key (the rest of the path).
	r = ts.do(t, "GET", covRoomPath(rid)+"/state/"+typ+"/a/b", alice.Token, nil)
	r.wantStatus(t, 200)
	if got := r.json(t)["key"]; got != "a/b" {
		t.Errorf("GET state a/b unescaped: %v", got)
	}
	ts.do(t, "GET", covRoomPath(rid)+"/state/"+typ+"/a", alice.Token, nil).wantError(t, 404, "M_NOT_FOUND")

	r = ts.do(t, "GET", covRoomPath(rid)+"/state", alice.Token, nil)
	r.wantStatus(t, 200)
	got := map[string]map[string]any{}
	for _, e := range covList(t, r.Body) {
		if e["type"] == typ {
			sk, ok := e["state_key"].(string)
			if !ok {
				t.Errorf("state event without a string state_key: %v", e)
			}
			if _, dup := got[sk]; dup {
				t.Errorf("state key %q twice in /state", sk)
			}
			got[sk], _ = e["content"].(map[string]any)
		}
	}
	if len(got) != len(keys) {
		t.Errorf("/state has %d %s events, want %d: %v", len(got), typ, len(keys), got)
	}
	for _, k := range keys {
		if c, ok := got[k]; !ok || c["key"] != k {
			t.Errorf("/state: key %q has content %v", k, c)
		}
	}
}
