package matrix_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/hearth-chat/hearth/localapi/matrix"
)

// longPoll runs GET /sync?since=…&timeout=60000 for u in the background;
// the channel yields the decoded body (nil on failure).
func longPoll(t *testing.T, ts *testServer, u *testUser, since string) <-chan map[string]any {
	req := ts.newRequest(t, "GET", covV3+"/sync?timeout=60000&since="+url.QueryEscape(since), u.Token, nil)
	out := make(chan map[string]any, 1)
	go func() {
		var body map[string]any
		defer func() { out <- body }()
		res, err := ts.http.Client().Do(req)
		if err != nil {
			return
		}
		defer res.Body.Close()
		if res.StatusCode == http.StatusOK {
			json.NewDecoder(res.Body).Decode(&body)
		}
	}()
	return out
}

func syncPos(t *testing.T, resp map[string]any) uint64 {
	t.Helper()
	pos, _, err := matrix.ParseSyncToken(resp["next_batch"].(string))
	if err != nil {
		t.Fatal(err)
	}
	return pos
}

// A message wakes the long polls of the room's members, and a long poll of
// a user who is not in the room deals with it without building a /sync
// response (Client-Server API §"Syncing": the response would be empty);
// an invite, which concerns that user, still ends the poll.
func TestLongPollSkipsOtherRoomsMessages(t *testing.T) {
	watch := matrix.WatchSyncs(t) // before the server, so it outlives it
	ts := newTestServer(t)
	alice, bob, carol := ts.register(t, "alice"), ts.register(t, "bob"), ts.register(t, "carol")
	roomID := ts.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	ts.do(t, "POST", covV3+"/join/"+url.PathEscape(roomID), carol.Token, map[string]any{}).wantStatus(t, 200)
	bobSince := covSync(t, ts, bob, "")["next_batch"].(string)
	carolSince := covSync(t, ts, carol, "")["next_batch"].(string)
	start := watch.Builds(bob.ID)

	bobPoll, carolPoll := longPoll(t, ts, bob, bobSince), longPoll(t, ts, carol, carolSince)
	// Both polls have built their first (empty) response and are waiting.
	pos, _, _ := matrix.ParseSyncToken(bobSince)
	watch.AwaitHandled(bob.ID, pos)
	pos, _, _ = matrix.ParseSyncToken(carolSince)
	watch.AwaitHandled(carol.ID, pos)

	ts.send(t, alice, roomID, "t1", "hello")
	got := <-carolPoll
	if got == nil {
		t.Fatal("carol's long poll failed")
	}
	tl := got["rooms"].(map[string]any)["join"].(map[string]any)[roomID].(map[string]any)["timeline"].(map[string]any)
	if evs := tl["events"].([]any); len(evs) != 1 || evs[0].(map[string]any)["content"].(map[string]any)["body"] != "hello" {
		t.Fatalf("carol's timeline = %v, want the message", evs)
	}

	watch.AwaitHandled(bob.ID, syncPos(t, got))
	if n := watch.Builds(bob.ID) - start; n != 1 {
		t.Errorf("bob's long poll built %d responses by the time it dealt with the message in a room he is not in, want 1 (the first)", n)
	}

	ts.do(t, "POST", covV3+"/rooms/"+url.PathEscape(roomID)+"/invite", alice.Token,
		map[string]any{"user_id": bob.ID}).wantStatus(t, 200)
	got = <-bobPoll
	if got == nil {
		t.Fatal("bob's long poll failed")
	}
	if got["rooms"].(map[string]any)["invite"].(map[string]any)[roomID] == nil {
		t.Errorf("bob's long poll ended without the invite: %v", got["rooms"])
	}
	if _, ok := got["rooms"].(map[string]any)["join"].(map[string]any)[roomID]; ok {
		t.Errorf("bob, only invited, got the room in rooms.join")
	}
}
