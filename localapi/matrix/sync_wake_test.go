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

// startLongPoll is longPoll, returning once the poll has reached the
// server's /sync: its first report, made before it waits (by finding its
// token current, or by building a response). Until then, a commit may
// land before the poll reads the stream position, and a poll whose token
// is behind builds a response first, as any /sync from an old token does.
// No other /sync of u may be running.
func startLongPoll(t *testing.T, ts *testServer, watch *matrix.SyncWatch, u *testUser, since string) <-chan map[string]any {
	n := watch.Reports(u.ID)
	poll := longPoll(t, ts, u, since)
	watch.AwaitReports(u.ID, n+1)
	return poll
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
// an invite, which concerns that user, still ends the poll. A long poll
// whose token is current waits before building anything: its response
// could only be empty.
func TestLongPollSkipsOtherRoomsMessages(t *testing.T) {
	watch := matrix.WatchSyncs(t) // before the server, so it outlives it
	ts := newTestServer(t)
	alice, bob, carol := ts.register(t, "alice"), ts.register(t, "bob"), ts.register(t, "carol")
	roomID := ts.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	ts.do(t, "POST", covV3+"/join/"+url.PathEscape(roomID), carol.Token, map[string]any{}).wantStatus(t, 200)
	carolSince := covSync(t, ts, carol, "")["next_batch"].(string)
	// Bob's first sync stores him online, after carol's token: his token
	// is current, hers is not (her poll builds an empty response first).
	bobSince := covSync(t, ts, bob, "")["next_batch"].(string)
	start := watch.Builds(bob.ID)

	// Both polls wait before the message is sent: one that read the
	// stream position only after its commit would start behind and build.
	bobPoll := startLongPoll(t, ts, watch, bob, bobSince)
	carolPoll := startLongPoll(t, ts, watch, carol, carolSince)
	if n := watch.Builds(bob.ID) - start; n != 0 {
		t.Errorf("bob's long poll from a current token built %d responses before waiting, want 0", n)
	}

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
	if n := watch.Builds(bob.ID) - start; n != 0 {
		t.Errorf("bob's long poll built %d responses by the time it dealt with the message in a room he is not in, want 0", n)
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

// A long poll whose token is current builds nothing before it waits, yet
// its token still acknowledges the to-device messages it follows
// (Client-Server API §"Send-to-Device messaging"): once the poll waits, a
// sync from an older token no longer gets them.
func TestLongPollAcknowledgesToDeviceBeforeWaiting(t *testing.T) {
	watch := matrix.WatchSyncs(t)
	ts, _ := newKeysServer(t)
	alice, bob, carol := ts.register(t, "alice"), ts.register(t, "bob"), ts.register(t, "carol")
	t0 := covSync(t, ts, bob, "")["next_batch"].(string)
	ts.do(t, "PUT", covV3+"/sendToDevice/m.test/td1", alice.Token, map[string]any{"messages": map[string]any{
		bob.ID: map[string]any{bob.DeviceID: map[string]any{"n": 1}}}}).wantStatus(t, 200)
	got := covSync(t, ts, bob, t0)
	if evs := got["to_device"].(map[string]any)["events"].([]any); len(evs) != 1 {
		t.Fatalf("bob's sync got %d to-device messages, want 1", len(evs))
	}
	start := watch.Builds(bob.ID)
	poll := startLongPoll(t, ts, watch, bob, got["next_batch"].(string))
	// A room of carol's, created once the poll waits, wakes it; it rules
	// the room out and waits on.
	ts.createRoom(t, carol, nil)
	pos, _ := ts.Rooms.Pos()
	watch.AwaitHandled(bob.ID, pos)
	if n := watch.Builds(bob.ID) - start; n != 0 {
		t.Errorf("the long poll built %d responses before anything concerned bob, want 0", n)
	}
	if evs := covSync(t, ts, bob, t0)["to_device"].(map[string]any)["events"].([]any); len(evs) != 0 {
		t.Errorf("a sync from before the acknowledged message got it again: %v", evs)
	}
	roomID := ts.createRoom(t, bob, nil)
	if resp := <-poll; resp == nil || resp["rooms"].(map[string]any)["join"].(map[string]any)[roomID] == nil {
		t.Fatalf("the long poll did not end with bob's new room: %v", resp)
	}
}

// A long poll woken by a message carries the message and its unread count
// in the same response (Client-Server API §"Receiving notifications"):
// the poll waits for the push evaluator's results of the commit, not for
// the commit alone, and a typing notification still ends it at once.
func TestLongPollCarriesItsCount(t *testing.T) {
	ps := newPushServer(t)
	alice, bob := ps.register(t, "alice"), ps.register(t, "bob")
	roomID := ps.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	ps.do(t, "POST", covV3+"/join/"+url.PathEscape(roomID), bob.Token, map[string]any{}).wantStatus(t, 200)
	ps.settle(t)
	since := covSync(t, ps.testServer, bob, "")["next_batch"].(string)
	for i := 1; i <= 3; i++ {
		poll := longPoll(t, ps.testServer, bob, since)
		ps.send(t, alice, roomID, "t"+string(rune('0'+i)), "hello bob")
		resp := <-poll
		if resp == nil {
			t.Fatal("long poll failed")
		}
		jr, _ := resp["rooms"].(map[string]any)["join"].(map[string]any)[roomID].(map[string]any)
		if jr == nil {
			t.Fatalf("message %d: room missing from %v", i, resp)
		}
		events := jr["timeline"].(map[string]any)["events"].([]any)
		unread := jr["unread_notifications"].(map[string]any)["notification_count"].(float64)
		if len(events) != 1 || int(unread) != i {
			t.Fatalf("message %d: %d events, notification_count %v, want 1 and %d", i, len(events), unread, i)
		}
		since = resp["next_batch"].(string)
	}

	poll := longPoll(t, ps.testServer, bob, since)
	ps.do(t, "PUT", covV3+"/rooms/"+url.PathEscape(roomID)+"/typing/"+url.PathEscape(alice.ID), alice.Token,
		map[string]any{"typing": true, "timeout": 30000}).wantStatus(t, 200)
	resp := <-poll
	if resp == nil {
		t.Fatal("long poll failed")
	}
	eph := resp["rooms"].(map[string]any)["join"].(map[string]any)[roomID].(map[string]any)["ephemeral"].(map[string]any)["events"].([]any)
	if len(eph) != 1 {
		t.Fatalf("typing: ephemeral %v", eph)
	}
}
