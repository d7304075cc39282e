package matrix_test

import (
	"net/url"
	"testing"
)

// TestMessagesEndToken: every /messages page with events has end, also the
// forward page that caught up with the room (later events are fetched from
// it) and the backward page that reached the room's start; the empty page
// after the start has none.
func TestMessagesEndToken(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	rid := ts.createRoom(t, alice, nil)
	since := covSync(t, ts, alice, "")["next_batch"].(string)
	first := ts.send(t, alice, rid, "t1", "one")
	page := func(q url.Values) map[string]any {
		t.Helper()
		r := ts.do(t, "GET", covRoomPath(rid)+"/messages?"+q.Encode(), alice.Token, nil)
		r.wantStatus(t, 200)
		return r.json(t)
	}
	fwd := page(url.Values{"dir": {"f"}, "from": {since}})
	end, ok := fwd["end"].(string)
	if ids := covIDs(t, fwd["chunk"]); len(ids) != 1 || ids[0] != first || !ok {
		t.Fatalf("forward page: chunk %v, end %v", ids, fwd["end"])
	}
	second := ts.send(t, alice, rid, "t2", "two")
	if ids := covIDs(t, page(url.Values{"dir": {"f"}, "from": {end}})["chunk"]); len(ids) != 1 || ids[0] != second {
		t.Fatalf("forward from the caught-up page's end: %v, want the new message", ids)
	}

	back := page(url.Values{"dir": {"b"}, "limit": {"100"}})
	end, ok = back["end"].(string)
	if !ok || len(covIDs(t, back["chunk"])) == 0 {
		t.Fatalf("backward page to the start: end %v", back["end"])
	}
	last := page(url.Values{"dir": {"b"}, "from": {end}})
	if _, ok := last["end"]; ok || len(covIDs(t, last["chunk"])) != 0 {
		t.Fatalf("past the start: %v", last)
	}
}
