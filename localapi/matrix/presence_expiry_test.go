package matrix_test

import (
	"net/url"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/localapi/matrix"
)

// waitPresence polls alice's stored presence until it is want; it fails
// the test after 10 s.
func waitPresence(t *testing.T, ts *testServer, localpart, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		u, err := ts.Accounts.Get(localpart)
		if err != nil {
			t.Fatal(err)
		}
		if u.Presence == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's presence is %q, want %q", localpart, u.Presence, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPresenceDevicesStop: when the user's only client stops syncing, its
// device stops counting after the presence timeout and the user goes
// offline, which the users sharing a room see once.
func TestPresenceDevicesStop(t *testing.T) {
	ts := newTestServer(t, matrix.Config{Registration: matrix.RegistrationOpen, PresenceTimeout: 200 * time.Millisecond})
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	roomID := ts.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	covJoin(t, ts, bob, roomID)
	bobTok := covSync(t, ts, bob, "")["next_batch"].(string)
	covSync(t, ts, alice, "")
	waitPresence(t, ts, "alice", "online")
	waitPresence(t, ts, "alice", "offline")
	r := ts.do(t, "GET", v3+"/presence/"+url.PathEscape(alice.ID)+"/status", bob.Token, nil)
	if got := r.json(t)["presence"]; got != "offline" {
		t.Errorf("bob reads alice's presence as %v, want offline", got)
	}
	var states []any
	for _, e := range covSync(t, ts, bob, bobTok)["presence"].(map[string]any)["events"].([]any) {
		if ev := e.(map[string]any); ev["sender"] == alice.ID {
			states = append(states, ev["content"].(map[string]any)["presence"])
		}
	}
	if len(states) != 1 || states[0] != "offline" {
		t.Errorf("alice's presence in bob's sync: %v, want her latest, offline", states)
	}
}

// TestPresenceAfterRestart: a user stored as online whose clients do not
// come back after a restart goes offline after the presence timeout,
// instead of staying online for good.
func TestPresenceAfterRestart(t *testing.T) {
	ts := newTestServer(t)
	ts.register(t, "alice")
	alice := ts.register(t, "alice2")
	covSync(t, ts, alice, "")
	waitPresence(t, ts, "alice2", "online")
	// A new API over the same store is what a restarted daemon builds.
	restarted := matrix.New(ts.Accounts, ts.Rooms, matrix.Config{PresenceTimeout: 200 * time.Millisecond})
	t.Cleanup(restarted.Close) // before the store closes: cleanups run last-in first-out
	waitPresence(t, ts, "alice2", "offline")
	if u, _ := ts.Accounts.Get("alice"); u.Presence != "" {
		t.Errorf("alice, who never synced, got presence %q", u.Presence)
	}
}

// TestPresenceExpiryNotMovedPerSync: a client's next /sync leaves the
// expiry timer the previous one armed where it is (it fires before the
// device could stop counting and re-arms itself then), instead of
// stopping and arming a timer per request.
func TestPresenceExpiryNotMovedPerSync(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	covSync(t, ts, alice, "")
	first := ts.API.PresenceExpiry("alice")
	if first.IsZero() {
		t.Fatal("no expiry timer armed after alice's /sync ended")
	}
	for range 3 {
		covSync(t, ts, alice, "")
	}
	if got := ts.API.PresenceExpiry("alice"); !got.Equal(first) {
		t.Errorf("the expiry timer moved from %v to %v", first, got)
	}
}

// TestPresenceExpiryDuringLongPoll: the expiry timer a /sync armed fires
// while the device's next /sync is still waiting; the device counts while
// it waits, and when that poll ends a timer is armed again, so the user
// goes offline one timeout later.
func TestPresenceExpiryDuringLongPoll(t *testing.T) {
	const timeout = 200 * time.Millisecond
	ts := newTestServer(t, matrix.Config{Registration: matrix.RegistrationOpen, PresenceTimeout: timeout})
	alice := ts.register(t, "alice")
	tok := covSync(t, ts, alice, "")["next_batch"].(string)
	waitPresence(t, ts, "alice", "online")
	armed := ts.API.PresenceExpiry("alice")
	// A long poll with nothing to wake it, waiting far longer than that
	// timer (5 s against 200 ms: the margin is a guard, not a measure).
	req := ts.newRequest(t, "GET", covV3+"/sync?timeout=5000&since="+url.QueryEscape(tok), alice.Token, nil)
	polled := make(chan error, 1)
	go func() {
		res, err := ts.http.Client().Do(req)
		if err == nil {
			res.Body.Close()
		}
		polled <- err
	}()
	time.Sleep(time.Until(armed) + 2*timeout)
	select {
	case err := <-polled:
		t.Fatalf("the long poll ended before the check (%v): the machine stalled for seconds", err)
	default:
	}
	// The timer has fired (or, on a stalled machine, is about to: then
	// this passes without testing it); alice's device is in a request.
	if u, _ := ts.Accounts.Get("alice"); u.Presence != "online" {
		t.Fatalf("alice's presence is %q during her long poll, want online", u.Presence)
	}
	if err := <-polled; err != nil {
		t.Fatal(err)
	}
	waitPresence(t, ts, "alice", "offline")
}
