package matrix_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"
)

// TestPreparedSyncIsOwnBuild: the response to a message is prepared while
// its commit runs and kept before the room's long polls wake
// (sync_early.go), so none of the users it is shared with builds one, not
// even the first to ask; and each gets byte for byte what their own build
// of the span gives (ages aside), with their own counts. For the ways
// clients ask: no filter, Element's (lazy loading, threaded counts),
// event_fields, and state_after under both names. A message the filter's
// timeline leaves out prepares nothing.
func TestPreparedSyncIsOwnBuild(t *testing.T) {
	r := newSharedRoom(t)
	users := []*testUser{r.bob, r.carol, r.fr, r.alice, r.erin, r.dave}
	sharedWith := map[*testUser]bool{r.bob: true, r.carol: true, r.fr: true}
	filtered := func(f string) string { return "&filter=" + url.QueryEscape(f) }
	queries := []string{
		"",
		filtered(`{"room":{"state":{"lazy_load_members":true},"timeline":{"unread_thread_notifications":true}}}`),
		filtered(`{"event_fields":["type","content.body","sender"]}`),
		"&use_state_after=true" + filtered(`{"room":{"state":{"lazy_load_members":true}}}`),
		"&org.matrix.msc4222.use_state_after=true",
	}
	for i, query := range queries {
		next := r.spanKept(t, query, users, fmt.Sprintf("q%d", i))
		before := r.ps.API.PreparedSyncs()
		r.ps.send(t, r.alice, r.roomID, fmt.Sprintf("p%d", i), "prepared")
		r.waitPrepared(t, before)
		r.ps.settle(t)
		_, built := r.sharedAgainstOwn(t, "query "+query, next, query, users)
		for _, u := range users {
			if built[u.ID] == sharedWith[u] {
				t.Errorf("query %q: %s built its own response: %v", query, u.ID, built[u.ID])
			}
		}
	}

	// The filter keeps m.room.message only; the next event is another type.
	query := filtered(`{"room":{"timeline":{"types":["m.room.message"]}}}`)
	next := r.spanKept(t, query, users, "t1")
	before := r.ps.API.PreparedSyncs()
	covSend(t, r.ps.testServer, r.alice, r.roomID, "m.hearth.test", "t2", map[string]any{"body": "not for this filter"})
	r.ps.settle(t)
	time.Sleep(50 * time.Millisecond) // a preparation would have ended by now
	if n := r.ps.API.PreparedSyncs(); n != before {
		t.Errorf("a message the filter leaves out prepared %d responses", n-before)
	}
	r.sharedAgainstOwn(t, "filtered out", next, query, users)
}

// spanKept sends a message and syncs every user over its span with query,
// which keeps the span's response to share, and returns the span's
// next_batch.
func (r *sharedRoom) spanKept(t *testing.T, query string, users []*testUser, txn string) string {
	t.Helper()
	since := r.since(t)
	r.ps.send(t, r.alice, r.roomID, txn, "before")
	r.ps.settle(t)
	bodies, built := r.syncAll(t, since, query, users)
	if !built[r.bob.ID] || built[r.carol.ID] {
		t.Fatalf("query %q: the span before was not kept to share (built: %v)", query, built)
	}
	var resp struct {
		NextBatch string `json:"next_batch"`
	}
	if err := json.Unmarshal([]byte(bodies[r.bob.ID]), &resp); err != nil || resp.NextBatch == "" {
		t.Fatalf("bob's response: %v %s", err, bodies[r.bob.ID])
	}
	return resp.NextBatch
}

// waitPrepared waits until a response was prepared and kept after before.
func (r *sharedRoom) waitPrepared(t *testing.T, before int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for r.ps.API.PreparedSyncs() == before {
		if time.Now().After(deadline) {
			t.Fatal("no response was prepared for the message")
		}
		time.Sleep(2 * time.Millisecond)
	}
}
