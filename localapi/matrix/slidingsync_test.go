package matrix_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"testing"
)

const ssPath = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"

// ssResp is the part of a sliding sync response the tests read.
type ssResp struct {
	Pos   string `json:"pos"`
	Lists map[string]struct {
		Count int `json:"count"`
	} `json:"lists"`
	Rooms      map[string]ssRoom          `json:"rooms"`
	Extensions map[string]json.RawMessage `json:"extensions"`
}

type ssRoom struct {
	Name          *string           `json:"name"`
	Initial       bool              `json:"initial"`
	Membership    string            `json:"membership"`
	Lists         []string          `json:"lists"`
	BumpStamp     *uint64           `json:"bump_stamp"`
	Timeline      []ssEvent         `json:"timeline"`
	RequiredState []ssEvent         `json:"required_state"`
	InviteState   []json.RawMessage `json:"invite_state"`
	Limited       bool              `json:"limited"`
	PrevBatch     string            `json:"prev_batch"`
	NumLive       *int              `json:"num_live"`
	JoinedCount   *int              `json:"joined_count"`
	Heroes        []struct {
		UserID string `json:"user_id"`
	} `json:"heroes"`
	IsDM *bool `json:"is_dm"`
}

type ssEvent struct {
	Type     string          `json:"type"`
	StateKey *string         `json:"state_key"`
	Sender   string          `json:"sender"`
	EventID  string          `json:"event_id"`
	Content  json.RawMessage `json:"content"`
}

// ss sends one sliding sync request; pos "" starts the connection.
func (ts *testServer) ss(t testing.TB, u *testUser, pos string, timeoutMs int, body any) *response {
	t.Helper()
	q := url.Values{}
	if pos != "" {
		q.Set("pos", pos)
	}
	if timeoutMs >= 0 {
		q.Set("timeout", fmt.Sprint(timeoutMs))
	}
	path := ssPath
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return ts.do(t, "POST", path, u.Token, body)
}

func (ts *testServer) ssOK(t testing.TB, u *testUser, pos string, timeoutMs int, body any) ssResp {
	t.Helper()
	r := ts.ss(t, u, pos, timeoutMs, body)
	r.wantStatus(t, 200)
	var out ssResp
	if err := json.Unmarshal(r.Body, &out); err != nil {
		t.Fatalf("decode: %v: %s", err, r.Body)
	}
	if out.Pos == "" {
		t.Fatalf("no pos in %s", r.Body)
	}
	return out
}

func ssList(ranges [][2]int, limit int, extra map[string]any) map[string]any {
	l := map[string]any{"ranges": ranges, "timeline_limit": limit, "required_state": [][]string{}}
	for k, v := range extra {
		l[k] = v
	}
	return l
}

// orderedRooms returns the rooms of a response in bump_stamp order, newest first.
func orderedRooms(t testing.TB, r ssResp) []string {
	t.Helper()
	var ids []string
	for id, rm := range r.Rooms {
		if rm.BumpStamp == nil {
			t.Fatalf("room %s has no bump_stamp", id)
		}
		ids = append(ids, id)
	}
	for i := range ids {
		for j := i + 1; j < len(ids); j++ {
			if *r.Rooms[ids[j]].BumpStamp > *r.Rooms[ids[i]].BumpStamp {
				ids[i], ids[j] = ids[j], ids[i]
			}
		}
	}
	return ids
}

// TestSlidingSyncWindowsByActivity: the list is the user's rooms by latest
// activity; a range selects a window of it, a wider range later sends only
// the rooms not sent yet, and a new message moves its room to the top in
// the next (long-polled) response, which carries that room alone.
func TestSlidingSyncWindowsByActivity(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	rooms := make([]string, 5)
	for i := range rooms {
		rooms[i] = ts.createRoom(t, alice, map[string]any{"name": fmt.Sprintf("room %d", i)})
	}
	for i, id := range rooms {
		ts.send(t, alice, id, fmt.Sprintf("m%d", i), fmt.Sprintf("hello %d", i))
	}
	// Newest activity first: rooms[4], rooms[3], ...
	body := map[string]any{"conn_id": "main", "lists": map[string]any{
		"all": ssList([][2]int{{0, 2}}, 1, nil)}}
	r1 := ts.ssOK(t, alice, "", -1, body)
	if r1.Lists["all"].Count != 5 {
		t.Fatalf("count = %d, want 5", r1.Lists["all"].Count)
	}
	got := orderedRooms(t, r1)
	want := []string{rooms[4], rooms[3], rooms[2]}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("first window = %v, want %v", got, want)
	}
	for _, id := range got {
		rm := r1.Rooms[id]
		if !rm.Initial || len(rm.Timeline) != 1 || rm.Timeline[0].Type != "m.room.message" || rm.Name == nil ||
			rm.Membership != "join" || rm.JoinedCount == nil || *rm.JoinedCount != 1 || rm.PrevBatch == "" || !rm.Limited {
			t.Fatalf("room %s: %+v", id, rm)
		}
		if len(rm.Lists) != 1 || rm.Lists[0] != "all" {
			t.Fatalf("room %s lists = %v", id, rm.Lists)
		}
	}

	// Widening the window sends only the two rooms not sent yet.
	body["lists"] = map[string]any{"all": ssList([][2]int{{0, 4}}, 1, nil)}
	r2 := ts.ssOK(t, alice, r1.Pos, 0, body)
	if got := orderedRooms(t, r2); fmt.Sprint(got) != fmt.Sprint([]string{rooms[1], rooms[0]}) {
		t.Fatalf("second window = %v, want %v", got, []string{rooms[1], rooms[0]})
	}

	// A long poll returns with the room that gets a message, now on top.
	done := make(chan ssResp, 1)
	go func() { done <- ts.ssOK(t, alice, r2.Pos, 30000, body) }()
	ev := ts.send(t, alice, rooms[0], "late", "back to the top")
	r3 := <-done
	if len(r3.Rooms) != 1 {
		t.Fatalf("long poll rooms = %v, want only %s", r3.Rooms, rooms[0])
	}
	rm, ok := r3.Rooms[rooms[0]]
	if !ok || rm.Initial || len(rm.Timeline) != 1 || rm.Timeline[0].EventID != ev || rm.NumLive == nil || *rm.NumLive != 1 {
		t.Fatalf("woken response: %+v", r3.Rooms)
	}
	for _, id := range rooms[1:] {
		if *rm.BumpStamp <= *r1.Rooms[rooms[4]].BumpStamp {
			t.Fatalf("bump_stamp %d of the room with the new message is not above %s's", *rm.BumpStamp, id)
		}
	}
	// And a fresh connection now lists it first.
	r4 := ts.ssOK(t, alice, "", -1, map[string]any{"lists": map[string]any{"all": ssList([][2]int{{0, 0}}, 1, nil)}})
	if got := orderedRooms(t, r4); len(got) != 1 || got[0] != rooms[0] {
		t.Fatalf("top room = %v, want %s", got, rooms[0])
	}
}

// TestSlidingSyncInviteList: an invite appears in an is_invite list with
// its stripped state, and not in the is_invite: false list.
func TestSlidingSyncInviteList(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	ts.createRoom(t, bob, nil)
	body := map[string]any{"lists": map[string]any{
		"invites": ssList([][2]int{{0, 9}}, 1, map[string]any{"filters": map[string]any{"is_invite": true}}),
		"rooms":   ssList([][2]int{{0, 9}}, 1, map[string]any{"filters": map[string]any{"is_invite": false}}),
	}}
	r1 := ts.ssOK(t, bob, "", -1, body)
	if r1.Lists["invites"].Count != 0 || r1.Lists["rooms"].Count != 1 {
		t.Fatalf("counts before: %+v", r1.Lists)
	}
	roomID := ts.createRoom(t, alice, map[string]any{"name": "party", "invite": []string{bob.ID}})
	r2 := ts.ssOK(t, bob, r1.Pos, 30000, body)
	if r2.Lists["invites"].Count != 1 || r2.Lists["rooms"].Count != 1 {
		t.Fatalf("counts after: %+v", r2.Lists)
	}
	rm, ok := r2.Rooms[roomID]
	if !ok || rm.Membership != "invite" || len(rm.InviteState) == 0 || len(rm.Lists) != 1 || rm.Lists[0] != "invites" ||
		len(rm.Timeline) != 0 {
		t.Fatalf("invite room: %+v", r2.Rooms)
	}
	var hasName bool
	for _, raw := range rm.InviteState {
		var ev ssEvent
		json.Unmarshal(raw, &ev)
		hasName = hasName || (ev.Type == "m.room.name" && string(ev.Content) != "")
	}
	if !hasName {
		t.Fatalf("invite_state lacks the room name: %s", rm.InviteState)
	}
	// Accepting the invite sends the room whole again (initial), joined,
	// now in the other list.
	ts.join(t, bob, roomID)
	r3 := ts.ssOK(t, bob, r2.Pos, 30000, body)
	rm, ok = r3.Rooms[roomID]
	if !ok || !rm.Initial || rm.Membership != "join" || len(rm.InviteState) != 0 || len(rm.Timeline) != 1 ||
		rm.Name == nil || *rm.Name != "party" || len(rm.Lists) != 1 || rm.Lists[0] != "rooms" {
		t.Fatalf("joined room: %+v", r3.Rooms)
	}
}

// TestSlidingSyncRequiredState: required_state returns what is asked,
// with "*" as a wildcard, "$ME" as the user and "$LAZY" members of the
// timeline's senders only; the MSC's {include, lazy_members} form too.
func TestSlidingSyncRequiredState(t *testing.T) {
	ts := newTestServer(t)
	alice, bob, carol := ts.register(t, "alice"), ts.register(t, "bob"), ts.register(t, "carol")
	roomID := ts.createRoom(t, alice, map[string]any{"preset": "public_chat", "name": "lazy"})
	ts.join(t, bob, roomID)
	ts.join(t, carol, roomID)
	ts.send(t, bob, roomID, "b1", "bob speaks")

	members := func(rm ssRoom) map[string]bool {
		out := map[string]bool{}
		for _, ev := range rm.RequiredState {
			if ev.Type == "m.room.member" {
				out[*ev.StateKey] = true
			}
		}
		return out
	}
	sub := func(rs any, limit int) map[string]any {
		return map[string]any{"room_subscriptions": map[string]any{roomID: map[string]any{
			"timeline_limit": limit, "required_state": rs}}}
	}
	r := ts.ssOK(t, alice, "", -1, sub([][]string{{"m.room.member", "$LAZY"}, {"m.room.member", "$ME"},
		{"m.room.name", ""}}, 1))
	rm := r.Rooms[roomID]
	if got := members(rm); len(got) != 2 || !got[bob.ID] || !got[alice.ID] {
		t.Fatalf("lazy members with $ME = %v, want bob and alice", got)
	}
	if len(rm.RequiredState) != 3 {
		t.Fatalf("required_state = %+v", rm.RequiredState)
	}
	r = ts.ssOK(t, alice, "", -1, sub([][]string{{"m.room.member", "*"}}, 0))
	if got := members(r.Rooms[roomID]); len(got) != 3 {
		t.Fatalf("all members = %v", got)
	}
	if len(r.Rooms[roomID].Timeline) != 0 {
		t.Fatalf("timeline_limit 0 gave %d events", len(r.Rooms[roomID].Timeline))
	}
	r = ts.ssOK(t, alice, "", -1, sub(map[string]any{"include": []any{map[string]any{}},
		"exclude": []any{map[string]any{"type": "m.room.member"}}, "lazy_members": true}, 1))
	types := map[string]bool{}
	for _, ev := range r.Rooms[roomID].RequiredState {
		types[ev.Type] = true
	}
	if got := members(r.Rooms[roomID]); len(got) != 1 || !got[bob.ID] || !types["m.room.create"] || !types["m.room.power_levels"] {
		t.Fatalf("include-all minus members, lazy: %+v", r.Rooms[roomID].RequiredState)
	}
}

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

// TestSlidingSyncAdvertised: /versions carries the flag matrix-rust-sdk
// (Element X) and matrix-js-sdk look for before using sliding sync.
func TestSlidingSyncAdvertised(t *testing.T) {
	ts := newTestServer(t)
	r := ts.do(t, "GET", "/_matrix/client/versions", "", nil)
	r.wantStatus(t, 200)
	features, _ := r.json(t)["unstable_features"].(map[string]any)
	if features["org.matrix.simplified_msc3575"] != true {
		t.Fatalf("org.matrix.simplified_msc3575 = %v", features["org.matrix.simplified_msc3575"])
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

// TestSlidingSyncExpandedTimeline: raising a room's timeline_limit (here
// through a subscription, as Element X does when a room is opened) sends
// the latest events at once with expanded_timeline; the same request
// again sends nothing new.
func TestSlidingSyncExpandedTimeline(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	roomID := ts.createRoom(t, alice, nil)
	for i := 0; i < 8; i++ {
		ts.send(t, alice, roomID, fmt.Sprint("e", i), fmt.Sprint("event ", i))
	}
	list := map[string]any{"all": ssList([][2]int{{0, 9}}, 1, nil)}
	r1 := ts.ssOK(t, alice, "", -1, map[string]any{"lists": list})
	if n := len(r1.Rooms[roomID].Timeline); n != 1 {
		t.Fatalf("first timeline has %d events", n)
	}
	body := map[string]any{"lists": list, "room_subscriptions": map[string]any{
		roomID: map[string]any{"timeline_limit": 5, "required_state": [][]string{}}}}
	r2 := ts.ssOK(t, alice, r1.Pos, 0, body)
	var rm struct {
		Initial          bool      `json:"initial"`
		ExpandedTimeline bool      `json:"expanded_timeline"`
		Timeline         []ssEvent `json:"timeline"`
		NumLive          int       `json:"num_live"`
	}
	resp := ts.ss(t, alice, r1.Pos, 0, body) // a retry with the same pos: the same answer
	resp.wantStatus(t, 200)
	var full struct {
		Pos   string                     `json:"pos"`
		Rooms map[string]json.RawMessage `json:"rooms"`
	}
	json.Unmarshal(resp.Body, &full)
	json.Unmarshal(full.Rooms[roomID], &rm)
	if rm.Initial || !rm.ExpandedTimeline || len(rm.Timeline) != 5 || rm.NumLive != 0 {
		t.Fatalf("expanded room: %s", full.Rooms[roomID])
	}
	if len(r2.Rooms[roomID].Timeline) != 5 {
		t.Fatalf("first expansion had %d events", len(r2.Rooms[roomID].Timeline))
	}
	r3 := ts.ssOK(t, alice, full.Pos, 0, body)
	if len(r3.Rooms) != 0 {
		t.Fatalf("sent again: %v", r3.Rooms)
	}
}

// TestSlidingSyncUnreadCounts: notification_count counts messages the
// user has not read, and reading the room (a read receipt) sends the room
// again with the count at 0, though no event arrived.
func TestSlidingSyncUnreadCounts(t *testing.T) {
	ps := newPushServer(t)
	alice, bob := ps.register(t, "alice"), ps.register(t, "bob")
	roomID := ps.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	ps.join(t, bob, roomID)
	var last string
	for i := 0; i < 3; i++ {
		last = ps.send(t, bob, roomID, fmt.Sprint("n", i), fmt.Sprint("news ", i))
	}
	ps.settle(t)
	body := map[string]any{"lists": map[string]any{"all": ssList([][2]int{{0, 9}}, 1, nil)}}
	type counts struct {
		Notification *int `json:"notification_count"`
	}
	get := func(r *response) (string, *counts) {
		var out struct {
			Pos   string            `json:"pos"`
			Rooms map[string]counts `json:"rooms"`
		}
		json.Unmarshal(r.Body, &out)
		c, ok := out.Rooms[roomID]
		if !ok {
			return out.Pos, nil
		}
		return out.Pos, &c
	}
	r := ps.ss(t, alice, "", -1, body)
	r.wantStatus(t, 200)
	pos, c := get(r)
	if c == nil || c.Notification == nil || *c.Notification != 3 {
		t.Fatalf("initial counts: %s", r.Body)
	}
	ps.do(t, "POST", v3path+"/rooms/"+url.PathEscape(roomID)+"/receipt/m.read/"+url.PathEscape(last), alice.Token,
		map[string]any{}).wantStatus(t, 200)
	r = ps.ss(t, alice, pos, 30000, body)
	r.wantStatus(t, 200)
	if _, c = get(r); c == nil || c.Notification == nil || *c.Notification != 0 {
		t.Fatalf("after reading: %s", r.Body)
	}
}

// TestSlidingSyncFilters: is_dm follows m.direct (and a room that becomes
// a DM is sent again with is_dm), is_encrypted, room_types with null for
// untyped rooms, not_room_types, and spaces (the space's m.space.child
// rooms, not the space itself).
func TestSlidingSyncFilters(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	dm := ts.createRoom(t, alice, map[string]any{"is_direct": true, "invite": []string{bob.ID}})
	plain := ts.createRoom(t, alice, nil)
	enc := ts.createRoom(t, alice, map[string]any{"initial_state": []any{map[string]any{
		"type": "m.room.encryption", "state_key": "", "content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}}}})
	space := ts.createRoom(t, alice, map[string]any{"creation_content": map[string]any{"type": "m.space"}})
	ts.putState(t, alice, space, "m.space.child", plain, map[string]any{"via": []string{testServerName}})
	direct := func(rooms ...string) {
		ts.do(t, "PUT", v3path+"/user/"+url.PathEscape(alice.ID)+"/account_data/m.direct", alice.Token,
			map[string]any{bob.ID: rooms}).wantStatus(t, 200)
	}
	direct(dm)
	f := func(filters map[string]any) map[string]any {
		return ssList([][2]int{{0, 9}}, 0, map[string]any{"filters": filters})
	}
	body := map[string]any{"lists": map[string]any{
		"dms":       f(map[string]any{"is_dm": true}),
		"not-dms":   f(map[string]any{"is_dm": false}),
		"encrypted": f(map[string]any{"is_encrypted": true}),
		"spaces":    f(map[string]any{"room_types": []any{"m.space"}}),
		"untyped":   f(map[string]any{"room_types": []any{nil}}),
		"no-spaces": f(map[string]any{"not_room_types": []any{"m.space"}}),
		"in-space":  f(map[string]any{"spaces": []string{space}}),
	}}
	r1 := ts.ssOK(t, alice, "", -1, body)
	want := map[string][]string{"dms": {dm}, "not-dms": {plain, enc, space}, "encrypted": {enc}, "spaces": {space},
		"untyped": {dm, plain, enc}, "no-spaces": {dm, plain, enc}, "in-space": {plain}}
	for list, rooms := range want {
		if got := r1.Lists[list].Count; got != len(rooms) {
			t.Errorf("list %s: count %d, want %d", list, got, len(rooms))
		}
		for _, id := range rooms {
			if !slices.Contains(r1.Rooms[id].Lists, list) {
				t.Errorf("room %s is not in list %s: %v", id, list, r1.Rooms[id].Lists)
			}
		}
	}
	if r1.Rooms[dm].IsDM == nil || !*r1.Rooms[dm].IsDM || r1.Rooms[plain].IsDM == nil || *r1.Rooms[plain].IsDM {
		t.Fatalf("is_dm: dm %v, plain %v", r1.Rooms[dm].IsDM, r1.Rooms[plain].IsDM)
	}
	direct(dm, plain)
	r2 := ts.ssOK(t, alice, r1.Pos, 30000, body)
	if r2.Lists["dms"].Count != 2 || r2.Rooms[plain].IsDM == nil || !*r2.Rooms[plain].IsDM {
		t.Fatalf("after m.direct changed: lists %+v, plain %+v", r2.Lists, r2.Rooms[plain])
	}
}

// TestSlidingSyncRequiredStateExpansion: asking for more state for a room
// already sent (a subscription with a wider required_state, as a client
// does when a room is opened) sends it at once, not only at the room's
// next event; asking for the same again sends nothing.
func TestSlidingSyncRequiredStateExpansion(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	roomID := ts.createRoom(t, alice, map[string]any{"name": "n", "topic": "the topic"})
	list := map[string]any{"all": map[string]any{"ranges": [][2]int{{0, 9}}, "timeline_limit": 1,
		"required_state": [][]string{{"m.room.name", ""}}}}
	r1 := ts.ssOK(t, alice, "", -1, map[string]any{"lists": list})
	if rs := r1.Rooms[roomID].RequiredState; len(rs) != 1 || rs[0].Type != "m.room.name" {
		t.Fatalf("first required_state: %+v", rs)
	}
	body := map[string]any{"lists": list, "room_subscriptions": map[string]any{roomID: map[string]any{
		"timeline_limit": 1, "required_state": [][]string{{"m.room.topic", ""}}}}}
	r2 := ts.ssOK(t, alice, r1.Pos, 0, body)
	rm, ok := r2.Rooms[roomID]
	hasTopic := false
	for _, ev := range rm.RequiredState {
		hasTopic = hasTopic || ev.Type == "m.room.topic"
	}
	if !ok || rm.Initial || !hasTopic || len(rm.Timeline) != 0 {
		t.Fatalf("expanded state: %+v", r2.Rooms)
	}
	if r3 := ts.ssOK(t, alice, r2.Pos, 0, body); len(r3.Rooms) != 0 {
		t.Fatalf("sent again: %+v", r3.Rooms)
	}
	// Narrowing again asks for nothing new.
	if r4 := ts.ssOK(t, alice, r2.Pos, 0, map[string]any{"lists": list}); len(r4.Rooms) != 0 {
		t.Fatalf("narrowed: %+v", r4.Rooms)
	}
}

// TestSlidingSyncIgnoredInvite: an invite from a user in the account's
// m.ignored_user_list is not listed; another user's is.
func TestSlidingSyncIgnoredInvite(t *testing.T) {
	ts := newTestServer(t)
	alice, bob, carol := ts.register(t, "alice"), ts.register(t, "bob"), ts.register(t, "carol")
	ts.do(t, "PUT", v3path+"/user/"+url.PathEscape(alice.ID)+"/account_data/m.ignored_user_list", alice.Token,
		map[string]any{"ignored_users": map[string]any{bob.ID: map[string]any{}}}).wantStatus(t, 200)
	fromBob := ts.createRoom(t, bob, map[string]any{"invite": []string{alice.ID}})
	fromCarol := ts.createRoom(t, carol, map[string]any{"invite": []string{alice.ID}})
	r := ts.ssOK(t, alice, "", -1, map[string]any{"lists": map[string]any{
		"invites": ssList([][2]int{{0, 9}}, 1, map[string]any{"filters": map[string]any{"is_invite": true}})}})
	if _, ok := r.Rooms[fromBob]; ok || r.Lists["invites"].Count != 1 {
		t.Fatalf("invites: count %d, rooms %v", r.Lists["invites"].Count, r.Rooms)
	}
	if _, ok := r.Rooms[fromCarol]; !ok {
		t.Fatalf("carol's invite is missing: %v", r.Rooms)
	}
}

// TestSlidingSyncFilteredInvite: an invite the account's MSC4155 invite
// filter ignores is not listed, as /sync hides it; another is.
func TestSlidingSyncFilteredInvite(t *testing.T) {
	ts := newTestServer(t)
	alice, bob, carol := ts.register(t, "alice"), ts.register(t, "bob"), ts.register(t, "carol")
	fromBob := ts.createRoom(t, bob, map[string]any{})
	ts.setInviteConfig(t, alice, map[string]any{"ignored_users": []string{bob.ID}})
	ts.do(t, "POST", v3path+"/rooms/"+url.PathEscape(fromBob)+"/invite", bob.Token, map[string]any{"user_id": alice.ID}).wantStatus(t, 200)
	fromCarol := ts.createRoom(t, carol, map[string]any{"invite": []string{alice.ID}})
	r := ts.ssOK(t, alice, "", -1, map[string]any{"lists": map[string]any{
		"invites": ssList([][2]int{{0, 9}}, 1, map[string]any{"filters": map[string]any{"is_invite": true}})}})
	if _, ok := r.Rooms[fromBob]; ok || r.Lists["invites"].Count != 1 {
		t.Fatalf("invites: count %d, rooms %v", r.Lists["invites"].Count, r.Rooms)
	}
	if _, ok := r.Rooms[fromCarol]; !ok {
		t.Fatalf("carol's invite is missing: %v", r.Rooms)
	}
}

// TestSlidingSyncSubscriptionNotMember: a subscription to a room the user
// is not in (public or not), or to one that does not exist, returns
// nothing of it (MSC4186 §"Subscriptions").
func TestSlidingSyncSubscriptionNotMember(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	public := ts.createRoom(t, bob, map[string]any{"preset": "public_chat", "name": "secret plans"})
	ts.send(t, bob, public, "s", "not for alice")
	sub := map[string]any{"timeline_limit": 5, "required_state": [][]string{{"*", "*"}}}
	r := ts.ssOK(t, alice, "", -1, map[string]any{"room_subscriptions": map[string]any{
		public: sub, "!nowhere:test.local": sub}})
	if len(r.Rooms) != 0 {
		t.Fatalf("rooms of others: %+v", r.Rooms)
	}
}

// TestSlidingSyncLeftRoomHeroesAtLeave: for a room the user was kicked
// from, heroes and the joined count are those of the state at the kick,
// as its timeline and required_state are: a member who joined after the
// kick is not shown to the kicked user.
func TestSlidingSyncLeftRoomHeroesAtLeave(t *testing.T) {
	ts := newTestServer(t)
	alice, bob, carol := ts.register(t, "alice"), ts.register(t, "bob"), ts.register(t, "carol")
	roomID := ts.createRoom(t, bob, map[string]any{"preset": "private_chat", "invite": []string{alice.ID}})
	rooms := covV3 + "/rooms/" + url.PathEscape(roomID)
	ts.join(t, alice, roomID)
	ts.do(t, "POST", rooms+"/kick", bob.Token, map[string]any{"user_id": alice.ID}).wantStatus(t, 200)
	ts.do(t, "POST", rooms+"/invite", bob.Token, map[string]any{"user_id": carol.ID}).wantStatus(t, 200)
	ts.join(t, carol, roomID)

	r := ts.ssOK(t, alice, "", -1, map[string]any{"room_subscriptions": map[string]any{
		roomID: map[string]any{"timeline_limit": 5, "required_state": [][]string{}}}})
	rm, ok := r.Rooms[roomID]
	if !ok || rm.Membership != "leave" {
		t.Fatalf("left room: %+v (present %v)", rm, ok)
	}
	var heroes []string
	for _, h := range rm.Heroes {
		heroes = append(heroes, h.UserID)
	}
	if !slices.Equal(heroes, []string{bob.ID}) {
		t.Errorf("heroes %v, want only bob (carol joined after the kick)", heroes)
	}
	if rm.JoinedCount == nil {
		t.Errorf("no joined_count")
	} else if *rm.JoinedCount != 1 {
		t.Errorf("joined_count %d, want 1 (bob, at the kick)", *rm.JoinedCount)
	}
}
