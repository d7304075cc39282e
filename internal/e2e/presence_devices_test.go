package e2e

import (
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
)

// syncAs makes one /sync of c's with set_presence=state and returns its
// next_batch.
func syncAs(t *testing.T, c *mautrix.Client, since string, state event.Presence) string {
	t.Helper()
	resp, err := c.FullSyncRequest(ctx(t), mautrix.ReqSync{Since: since, SetPresence: state})
	noErr(t, err, "sync as %s with set_presence=%s", c.DeviceID, state)
	return resp.NextBatch
}

// TestPresenceTwoDevicesNoStorm: one user with two sessions, one syncing
// with set_presence=online and the other idle (set_presence=unavailable),
// must not wake another user's long poll on every sync. The user's
// presence is the most present of their devices' (Client-Server API
// §"Presence"), which does not change while both keep syncing, so bob's
// long poll sleeps through all of alice's syncs.
func TestPresenceTwoDevicesNoStorm(t *testing.T) {
	t.Parallel()
	d := StartDaemon(t)
	alice := d.Register("alice")
	alice2 := d.Login("alice")
	bob := d.Register("bob")
	roomID := PublicRoom(t, alice, bob)

	// Each of alice's sessions syncs once, so her presence is settled.
	tok1 := syncAs(t, alice, "", event.PresenceOnline)
	tok2 := syncAs(t, alice2, "", event.PresenceUnavailable)
	bobTok := Quiesce(t, bob, Sync(t, bob, "", "", 0).NextBatch)

	// bob long-polls in a loop and reports every response.
	type polled struct {
		resp *mautrix.RespSync
		err  error
	}
	responses := make(chan polled, 100)
	go func() {
		since := bobTok
		for ctx(t).Err() == nil {
			resp, err := bob.FullSyncRequest(ctx(t), mautrix.ReqSync{Since: since, Timeout: 60000})
			select {
			case responses <- polled{resp, err}:
			case <-ctx(t).Done():
				return
			}
			if err != nil {
				return
			}
			since = resp.NextBatch
		}
	}()

	const rounds = 40
	for range rounds {
		tok1 = syncAs(t, alice, tok1, event.PresenceOnline)
		tok2 = syncAs(t, alice2, tok2, event.PresenceUnavailable)
	}
	// A message marks the end: every response before it came from alice's
	// syncs alone.
	marker := SendText(t, alice, roomID, "that is all")
	var early, presenceEvents int
	for done := false; !done; {
		select {
		case p := <-responses:
			if p.err != nil {
				t.Fatalf("bob's long poll: %v", p.err)
			}
			if TimelineHas(p.resp, roomID, marker) {
				done = true
				break
			}
			early++
			for _, ev := range p.resp.Presence.Events {
				if ev.Sender == alice.UserID {
					presenceEvents++
				}
			}
		case <-time.After(waitDeadline):
			t.Fatalf("bob's long poll never returned alice's message")
		}
	}
	t.Logf("bob's long poll returned %d times during %d syncs of each of alice's sessions (%d presence events of alice)", early, rounds, presenceEvents)
	if early > 1 {
		t.Errorf("bob's long poll returned %d times before alice's message while alice's two sessions synced %d times each; her presence did not change, so it should sleep through them", early, rounds)
	}
	// alice is online (her most present session), as bob reads it.
	code, b := Raw(t, bob, "GET", "/_matrix/client/v3/presence/"+alice.UserID.String()+"/status", nil)
	if code != 200 || string(mustField(t, b, "presence")) != `"online"` {
		t.Errorf("alice's presence as bob reads it: %d %s, want online", code, b)
	}
}

// TestPresenceTwoDevicesFederation: the same two sessions of alice send
// another server no m.presence EDU per sync, only when her presence (the
// most present of her sessions) changes.
func TestPresenceTwoDevicesFederation(t *testing.T) {
	t.Parallel()
	peer, hs1 := startWithPeer(t, false)
	alice := hs1.Register("alice")
	alice2 := hs1.Login("alice")
	roomID := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	peer.join("mallory", string(roomID))
	tok1 := syncAs(t, alice, "", event.PresenceOnline)
	tok2 := syncAs(t, alice2, "", event.PresenceUnavailable)
	const rounds = 20
	for range rounds {
		tok1 = syncAs(t, alice, tok1, event.PresenceOnline)
		tok2 = syncAs(t, alice2, tok2, event.PresenceUnavailable)
	}
	// hs1 sends a destination's EDUs and PDUs in order: once the peer has
	// this message, it has every presence EDU sent before it.
	marker := SendText(t, alice, roomID, "that is all")
	waitFor(t, "the peer receives alice's message", func() (bool, bool) {
		peer.mu.Lock()
		defer peer.mu.Unlock()
		rm := peer.rooms[string(roomID)]
		return true, rm != nil && rm.latest != nil && rm.latest.EventID() == string(marker)
	})
	edus := peer.called("edu m.presence")
	t.Logf("the peer got %d m.presence EDUs for %d syncs of each of alice's sessions", edus, rounds+1)
	if edus > 2 {
		t.Errorf("the peer got %d m.presence EDUs while alice's presence stayed online; want one per change", edus)
	}
}
