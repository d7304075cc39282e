package matrix_test

import (
	"fmt"
	"testing"
)

// Sliding sync connections: pos, resets and the bounds on their number.

// TestSlidingSyncUnknownPos: a pos the connection does not hold — made
// up, of another conn_id, or superseded — is 400 M_UNKNOWN_POS; the
// latest pos may be used again (a retry), and so may the one before it
// while the latest has not been used; of two answers to one pos, the
// client may use either.
func TestSlidingSyncUnknownPos(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	ts.createRoom(t, alice, nil)
	body := map[string]any{"conn_id": "a", "lists": map[string]any{"l": ssList([][2]int{{0, 0}}, 1, nil)}}
	r1 := ts.ssOK(t, alice, "", -1, body)
	r2 := ts.ssOK(t, alice, r1.Pos, 0, body)
	ts.ssOK(t, alice, r1.Pos, 0, body) // retry of the request that gave r2
	r3 := ts.ssOK(t, alice, r1.Pos, 0, body)
	ts.ssOK(t, alice, r3.Pos, 0, body)
	for name, pos := range map[string]string{
		"forged":        "nonsense",
		"forged parts":  "abc_1_1",
		"superseded":    r1.Pos,
		"dropped retry": r2.Pos,
	} {
		r := ts.ss(t, alice, pos, 0, body)
		r.wantStatus(t, 400)
		if code := r.str(t, "errcode"); code != "M_UNKNOWN_POS" {
			t.Errorf("%s: errcode %s", name, code)
		}
	}
	other := map[string]any{"conn_id": "b"}
	r := ts.ss(t, alice, r3.Pos, 0, other)
	r.wantStatus(t, 400)
	if code := r.str(t, "errcode"); code != "M_UNKNOWN_POS" {
		t.Errorf("other conn_id: errcode %s", code)
	}
	// Two answers made from one pos (a cancelled request the server still
	// answered, then the retry): the client may go on from either.
	ra := ts.ssOK(t, alice, r3.Pos, 0, body)
	rb := ts.ssOK(t, alice, r3.Pos, 0, body)
	ts.ssOK(t, alice, ra.Pos, 0, body)
	if r := ts.ss(t, alice, rb.Pos, 0, body); r.Status != 400 {
		t.Errorf("the other answer after one was used: %d %s", r.Status, r.Body)
	}
	// A pos from another server process (another epoch) is unknown too.
	ts2 := newTestServer(t)
	bob := ts2.register(t, "alice")
	r = ts2.ss(t, bob, r3.Pos, 0, body)
	r.wantStatus(t, 400)
	if code := r.str(t, "errcode"); code != "M_UNKNOWN_POS" {
		t.Errorf("other process: errcode %s", code)
	}
}

// TestSlidingSyncBadInput: malformed requests get the spec's error and
// change nothing; absurd values are clamped; unknown extensions are
// ignored.
func TestSlidingSyncBadInput(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	roomID := ts.createRoom(t, alice, nil)
	for i := 0; i < 150; i++ {
		ts.send(t, alice, roomID, fmt.Sprint("t", i), "x")
	}
	lists := func(l map[string]any) map[string]any { return map[string]any{"lists": map[string]any{"l": l}} }
	many := map[string]any{}
	for i := 0; i < 101; i++ {
		many[fmt.Sprint("l", i)] = ssList([][2]int{{0, 1}}, 1, nil)
	}
	manyRanges := make([][2]int, 17)
	for _, tc := range []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"not JSON", "{", 400, "M_NOT_JSON"},
		{"not an object", "[]", 400, "M_BAD_JSON"},
		{"lists not an object", map[string]any{"lists": 3}, 400, "M_BAD_JSON"},
		{"negative range", lists(map[string]any{"ranges": [][]int{{-1, 3}}, "timeline_limit": 1}), 400, "M_INVALID_PARAM"},
		{"reversed range", lists(map[string]any{"ranges": [][]int{{5, 3}}, "timeline_limit": 1}), 400, "M_INVALID_PARAM"},
		{"three-part range", lists(map[string]any{"ranges": [][]int{{1, 2, 3}}, "timeline_limit": 1}), 400, "M_BAD_JSON"},
		{"non-integer range", lists(map[string]any{"ranges": []any{[]any{0, 1.5}}, "timeline_limit": 1}), 400, "M_BAD_JSON"},
		{"string range", lists(map[string]any{"ranges": []any{[]any{"0", "1"}}, "timeline_limit": 1}), 400, "M_BAD_JSON"},
		{"too many ranges", lists(map[string]any{"ranges": manyRanges, "timeline_limit": 1}), 400, "M_INVALID_PARAM"},
		{"too many lists", map[string]any{"lists": many}, 400, "M_INVALID_PARAM"},
		{"negative timeline_limit", lists(map[string]any{"timeline_limit": -1}), 400, "M_INVALID_PARAM"},
		{"fractional timeline_limit", lists(map[string]any{"timeline_limit": 1.5}), 400, "M_BAD_JSON"},
		{"bad required_state", lists(map[string]any{"timeline_limit": 1, "required_state": [][]string{{"a"}}}), 400, "M_BAD_JSON"},
		{"bad subscription key", map[string]any{"room_subscriptions": map[string]any{"nope": map[string]any{}}}, 400, "M_INVALID_PARAM"},
		{"bad known extension", map[string]any{"extensions": map[string]any{"typing": 7}}, 400, "M_BAD_JSON"},
		{"extensions not an object", map[string]any{"extensions": []int{1}}, 400, "M_BAD_JSON"},
		{"long conn_id", map[string]any{"conn_id": string(make([]byte, 100))}, 400, "M_INVALID_PARAM"},
	} {
		r := ts.ss(t, alice, "", -1, tc.body)
		if r.Status != tc.status || r.str(t, "errcode") != tc.code {
			t.Errorf("%s: %d %s, want %d %s", tc.name, r.Status, r.Body, tc.status, tc.code)
		}
	}
	r := ts.ss(t, alice, "", -1, map[string]any{})
	r.wantStatus(t, 200)
	if r2 := ts.ss(t, alice, r.str(t, "pos"), 0, map[string]any{}); r2.Status != 200 {
		t.Fatalf("a bad request must not end the connection: %d %s", r2.Status, r2.Body)
	}
	bad := ts.ss(t, alice, "", -1, nil)
	bad.wantStatus(t, 200) // an empty body is an empty request
	if r := ts.ss(t, alice, "x", -1, map[string]any{}); r.Status != 400 || r.str(t, "errcode") != "M_UNKNOWN_POS" {
		t.Errorf("bad pos: %d %s", r.Status, r.Body)
	}
	if r := ts.do(t, "POST", ssPath+"?timeout=-5&pos=x", alice.Token, map[string]any{}); r.Status != 400 {
		t.Errorf("negative timeout: %d %s", r.Status, r.Body)
	}

	// An absurd timeline_limit and range are clamped; unknown extensions
	// are ignored.
	out := ts.ssOK(t, alice, "", -1, map[string]any{
		"lists":      map[string]any{"l": ssList([][2]int{{0, 1 << 40}}, 1<<40, nil)},
		"extensions": map[string]any{"org.example.nope": map[string]any{"enabled": true}, "org.example.odd": 7},
	})
	if n := len(out.Rooms[roomID].Timeline); n != 100 {
		t.Fatalf("timeline of %d events, want the clamp of 100", n)
	}
}

// TestSlidingSyncConnectionsBounded: thousands of conn_ids from one device
// keep at most 16 connections; the oldest is dropped and its pos is
// M_UNKNOWN_POS.
func TestSlidingSyncConnectionsBounded(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	first := ts.ssOK(t, alice, "", -1, map[string]any{"conn_id": "c0"})
	for i := 1; i < 2000; i++ {
		ts.ssOK(t, alice, "", -1, map[string]any{"conn_id": fmt.Sprint("c", i)})
	}
	if n := ts.API.SlidingConnCount(); n != 16 {
		t.Fatalf("%d connections kept, want 16", n)
	}
	r := ts.ss(t, alice, first.Pos, 0, map[string]any{"conn_id": "c0"})
	if r.Status != 400 || r.str(t, "errcode") != "M_UNKNOWN_POS" {
		t.Fatalf("dropped connection's pos: %d %s", r.Status, r.Body)
	}
}

// TestSlidingSyncConnectionsBoundedPerUser: one user's connections from
// many devices (70, with 15 conn_ids each: more than the whole table
// holds) keep at most 64 and never push out another user's connection,
// even an older one; the user's own least recently used go first.
func TestSlidingSyncConnectionsBoundedPerUser(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	body := map[string]any{"conn_id": "b"}
	bobFirst := ts.ssOK(t, bob, "", -1, body)
	var dev0 *testUser
	var dev0Pos string
	for d := 0; d < 70; d++ {
		dev := ts.login(t, alice, fmt.Sprint("DEV", d))
		for c := 0; c < 15; c++ {
			r := ts.ssOK(t, dev, "", -1, map[string]any{"conn_id": fmt.Sprint("c", c)})
			if d == 0 && c == 0 {
				dev0, dev0Pos = dev, r.Pos
			}
		}
	}
	if n := ts.API.SlidingConnCount(); n != 65 {
		t.Errorf("%d connections kept, want alice's 64 and bob's", n)
	}
	ts.ssOK(t, bob, bobFirst.Pos, 0, body)
	// alice's first connection was her least recently used: it went.
	if r := ts.ss(t, dev0, dev0Pos, 0, map[string]any{"conn_id": "c0"}); r.Status != 400 {
		t.Errorf("alice's oldest connection kept: %d %s", r.Status, r.Body)
	}
}
