package matrix_test

import (
	"fmt"
	"net/url"
	"testing"
)

// A stored filter passed to /sync by ID applies on every sync that names
// it (the second from the in-memory copy, filterCache), and stays its
// owner's: another user naming the same ID gets M_INVALID_PARAM
// (Client-Server API §"Filtering"), even once the owner's syncs have it
// in memory.
func TestSyncFilterIDIsItsOwners(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	roomID := ts.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	ts.do(t, "POST", covV3+"/join/"+url.PathEscape(roomID), bob.Token, map[string]any{}).wantStatus(t, 200)
	for i := range 3 {
		ts.send(t, alice, roomID, fmt.Sprintf("t%d", i), "hello")
	}
	id := ts.do(t, "POST", covV3+"/user/"+url.PathEscape(alice.ID)+"/filter", alice.Token,
		map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 1}}}).str(t, "filter_id")
	for i := range 2 {
		r := ts.do(t, "GET", covV3+"/sync?timeout=0&filter="+url.QueryEscape(id), alice.Token, nil)
		r.wantStatus(t, 200)
		tl := joinedIn(t, r.json(t), roomID)["timeline"].(map[string]any)["events"].([]any)
		if len(tl) != 1 {
			t.Fatalf("sync %d with the filter: %d timeline events, want 1", i+1, len(tl))
		}
	}
	ts.do(t, "GET", covV3+"/sync?timeout=0&filter="+url.QueryEscape(id), bob.Token, nil).
		wantError(t, 400, "M_INVALID_PARAM")
}

// Inline filters are kept parsed by their exact text (filterCache.inline):
// alternating two of them, each sync gets its own, from memory after the
// first; an invalid one is refused every time, never kept.
func TestSyncInlineFilterKeyedByText(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	roomID := ts.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	for i := range 3 {
		ts.send(t, alice, roomID, fmt.Sprintf("t%d", i), "hello")
	}
	for round := range 2 {
		for _, limit := range []int{1, 2} {
			f := fmt.Sprintf(`{"room":{"timeline":{"limit":%d}}}`, limit)
			r := ts.do(t, "GET", covV3+"/sync?timeout=0&filter="+url.QueryEscape(f), alice.Token, nil)
			r.wantStatus(t, 200)
			tl := joinedIn(t, r.json(t), roomID)["timeline"].(map[string]any)["events"].([]any)
			if len(tl) != limit {
				t.Fatalf("round %d, limit %d: %d timeline events", round, limit, len(tl))
			}
		}
		bad := `{"room":{"timeline":{"limit":-1}}}`
		ts.do(t, "GET", covV3+"/sync?timeout=0&filter="+url.QueryEscape(bad), alice.Token, nil).
			wantError(t, 400, "M_BAD_JSON")
	}
}
