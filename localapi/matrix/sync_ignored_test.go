package matrix_test

import (
	"fmt"
	"net/url"
	"testing"
)

// Client-Server API §"Ignoring Users": servers must not send room invites
// from ignored users to clients (Complement
// TestInviteFromIgnoredUsersDoesNotAppearInSync). alice ignores bob; his
// invite is in neither her incremental nor her initial sync, chris's is.
func TestSyncHidesInvitesFromIgnoredUsers(t *testing.T) {
	ts := newTestServer(t)
	alice, bob, chris := ts.register(t, "alice"), ts.register(t, "bob"), ts.register(t, "chris")
	ts.do(t, "PUT", covV3+"/user/"+url.PathEscape(alice.ID)+"/account_data/m.ignored_user_list", alice.Token,
		map[string]any{"ignored_users": map[string]any{bob.ID: map[string]any{}}}).wantStatus(t, 200)
	since := covSync(t, ts, alice, "")["next_batch"].(string)

	fromBob := ts.createRoom(t, bob, map[string]any{"preset": "private_chat", "invite": []string{alice.ID}})
	fromChris := ts.createRoom(t, chris, map[string]any{"preset": "private_chat", "invite": []string{alice.ID}})

	for what, resp := range map[string]map[string]any{"incremental": covSync(t, ts, alice, since), "initial": covSync(t, ts, alice, "")} {
		invites, _ := resp["rooms"].(map[string]any)["invite"].(map[string]any)
		if invites[fromChris] == nil {
			t.Errorf("%s sync: chris's invite is missing", what)
		}
		if invites[fromBob] != nil {
			t.Errorf("%s sync: the invite from bob, whom alice ignores, is shown", what)
		}
	}
}

// The ignored-users list /sync keeps in memory between a long poll's
// responses (ignoredCache) follows every change: after alice ignores bob,
// the next incremental sync hides his message sent after the change, and
// after she stops, shows the next one. Syncs in between, with no account
// data change in their span, carry the cached list forward.
func TestSyncIgnoredListCacheFollowsChanges(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	roomID := ts.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	ts.do(t, "POST", covV3+"/join/"+url.PathEscape(roomID), bob.Token, map[string]any{}).wantStatus(t, 200)
	setIgnored := func(users map[string]any) {
		ts.do(t, "PUT", covV3+"/user/"+url.PathEscape(alice.ID)+"/account_data/m.ignored_user_list", alice.Token,
			map[string]any{"ignored_users": users}).wantStatus(t, 200)
	}
	since := covSync(t, ts, alice, "")["next_batch"].(string)
	// next sends a message as bob and reports whether alice's next
	// incremental sync shows it.
	n := 0
	next := func() bool {
		n++
		body := fmt.Sprintf("message %d", n)
		ts.send(t, bob, roomID, fmt.Sprintf("t%d", n), body)
		resp := covSync(t, ts, alice, since)
		since = resp["next_batch"].(string)
		join, _ := resp["rooms"].(map[string]any)["join"].(map[string]any)
		jr, _ := join[roomID].(map[string]any)
		tl, _ := jr["timeline"].(map[string]any)
		evs, _ := tl["events"].([]any)
		for _, ev := range evs {
			if c, _ := ev.(map[string]any)["content"].(map[string]any); c["body"] == body {
				return true
			}
		}
		return false
	}
	if first, second := next(), next(); !first || !second {
		t.Fatal("bob's message is hidden before alice ignores him")
	}
	setIgnored(map[string]any{bob.ID: map[string]any{}})
	if next() {
		t.Error("bob's message is shown after alice ignored him")
	}
	if next() {
		t.Error("bob's second message is shown after alice ignored him")
	}
	setIgnored(map[string]any{})
	if !next() {
		t.Error("bob's message is hidden after alice stopped ignoring him")
	}
}
