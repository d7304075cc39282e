package matrix_test

import (
	"net/url"
	"testing"
)

// TestSyncStateAfterShape: MSC4222 (spec v1.16). With use_state_after a
// joined room carries state_after and no state; with the unstable
// org.matrix.msc4222.use_state_after (what matrix-js-sdk sends) the
// unstable field name; without either, state alone, as before. The
// section is there even when empty, and holds a state event the
// timeline also carries. The responses match the spec's schema.
func TestSyncStateAfterShape(t *testing.T) {
	sp := loadSpec(t)
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	roomID := ts.createRoom(t, alice, map[string]any{"preset": "private_chat"})
	since := covSync(t, ts, alice, "")["next_batch"].(string)
	ts.putState(t, alice, roomID, "m.room.topic", "", map[string]any{"topic": "new"})
	ts.send(t, alice, roomID, "t1", "hello")

	room := func(query, section string) map[string]any {
		t.Helper()
		r := ts.do(t, "GET", covV3+"/sync?timeout=0&since="+url.QueryEscape(since)+query, alice.Token, nil)
		r.wantStatus(t, 200)
		sp.check(t, r)
		rooms, _ := r.json(t)["rooms"].(map[string]any)
		jr, _ := rooms["join"].(map[string]any)[roomID].(map[string]any)
		if jr == nil {
			t.Fatalf("%s: the room is not in rooms.join", query)
		}
		for _, k := range []string{"state", "state_after", "org.matrix.msc4222.state_after"} {
			if _, has := jr[k]; has != (k == section) {
				t.Errorf("%q: room has %s: %v, want only %s", query, k, has, section)
			}
		}
		return jr
	}
	topicIn := func(jr map[string]any, section string) bool {
		sec, _ := jr[section].(map[string]any)
		evs, _ := sec["events"].([]any)
		for _, ev := range evs {
			if ev.(map[string]any)["type"] == "m.room.topic" {
				return true
			}
		}
		return false
	}
	if jr := room("", "state"); topicIn(jr, "state") {
		t.Errorf("without use_state_after the topic, in the timeline, is also in state")
	}
	if jr := room("&use_state_after=true", "state_after"); !topicIn(jr, "state_after") {
		t.Errorf("state_after lacks the topic set in the timeline")
	}
	if jr := room("&org.matrix.msc4222.use_state_after=true", "org.matrix.msc4222.state_after"); !topicIn(jr, "org.matrix.msc4222.state_after") {
		t.Errorf("org.matrix.msc4222.state_after lacks the topic set in the timeline")
	}
	room("&use_state_after=false", "state")

	// A room whose only news is account data still has the section.
	next := covSync(t, ts, alice, since)["next_batch"].(string)
	ts.do(t, "PUT", covV3+"/user/"+url.PathEscape(alice.ID)+"/rooms/"+url.PathEscape(roomID)+"/account_data/x.test",
		alice.Token, map[string]any{"a": 1}).wantStatus(t, 200)
	since = next
	jr := room("&use_state_after=true", "state_after")
	if sec, _ := jr["state_after"].(map[string]any); sec == nil || sec["events"] == nil {
		t.Errorf("state_after of a room with account data alone: %v, want an empty events list", jr["state_after"])
	}
}
