package matrix_test

import (
	"encoding/json"
	"fmt"
	"net/url"
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
