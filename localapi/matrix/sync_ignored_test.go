package matrix_test

import (
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
