package matrix_test

import (
	"net/url"
	"testing"
)

// setInviteConfig writes u's MSC4155 invite permission config.
func (ts *testServer) setInviteConfig(t testing.TB, u *testUser, config map[string]any) {
	t.Helper()
	ts.do(t, "PUT", v3+"/user/"+url.PathEscape(u.ID)+"/account_data/org.matrix.msc4155.invite_permission_config",
		u.Token, config).wantStatus(t, 200)
}

// invitesIn lists the rooms of rooms.invite in a sync response.
func invitesIn(resp map[string]any) map[string]any {
	rooms, _ := resp["rooms"].(map[string]any)
	inv, _ := rooms["invite"].(map[string]any)
	return inv
}

// TestInviteFilterBlocksLocalInvites: MSC4155 (Complement
// TestInviteFiltering "Can block a single user", "Can glob several
// servers"). alice blocks bob: his invite by POST /invite, by PUT
// /state/m.room.member and by createRoom's invite list is refused with
// 403 M_INVITE_BLOCKED, the room is left as it was (no invite stored,
// createRoom makes no room) and alice's sync shows nothing. A server
// glob blocks the users of this server too. With the config removed the
// invite goes through.
func TestInviteFilterBlocksLocalInvites(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	roomID := ts.createRoom(t, bob, map[string]any{"preset": "private_chat"})
	rid := url.PathEscape(roomID)

	for _, config := range []map[string]any{
		{"blocked_users": []string{bob.ID}},
		{"blocked_servers": []string{"*.test", "test*"}},
		{"blocked_servers": []string{"*"}, "ignored_users": []any{nil, 3}},
	} {
		ts.setInviteConfig(t, alice, config)
		before := ts.snapshot(t, bob, roomID)
		ts.do(t, "POST", v3+"/rooms/"+rid+"/invite", bob.Token, map[string]any{"user_id": alice.ID}).
			wantError(t, 403, "M_INVITE_BLOCKED")
		ts.do(t, "PUT", v3+"/rooms/"+rid+"/state/m.room.member/"+url.PathEscape(alice.ID), bob.Token,
			map[string]any{"membership": "invite"}).wantError(t, 403, "M_INVITE_BLOCKED")
		before.wantSame(t, ts.snapshot(t, bob, roomID))

		joined := len(ts.do(t, "GET", v3+"/joined_rooms", bob.Token, nil).json(t)["joined_rooms"].([]any))
		ts.do(t, "POST", v3+"/createRoom", bob.Token, map[string]any{"invite": []string{alice.ID}}).
			wantError(t, 403, "M_INVITE_BLOCKED")
		if n := len(ts.do(t, "GET", v3+"/joined_rooms", bob.Token, nil).json(t)["joined_rooms"].([]any)); n != joined {
			t.Errorf("config %v: a refused createRoom made a room (%d joined rooms, was %d)", config, n, joined)
		}
		if inv := invitesIn(covSync(t, ts, alice, "")); len(inv) != 0 {
			t.Errorf("config %v: alice's sync shows invites %v", config, inv)
		}
	}

	ts.setInviteConfig(t, alice, map[string]any{})
	ts.do(t, "POST", v3+"/rooms/"+rid+"/invite", bob.Token, map[string]any{"user_id": alice.ID}).wantStatus(t, 200)
	if invitesIn(covSync(t, ts, alice, ""))[roomID] == nil {
		t.Errorf("with the config removed, bob's invite is not in alice's sync")
	}
}

// TestInviteFilterIgnoresInvites: MSC4155 (Complement "Can ignore a
// single user", "Can ignore a whole server"). An ignored invite succeeds
// for the inviter and is stored (the room's state has it), but stays out
// of alice's initial and incremental syncs, while chris's invite is shown.
// An allowed_users entry wins over the ignore. Once the config is removed
// the ignored invite is shown again.
func TestInviteFilterIgnoresInvites(t *testing.T) {
	ts := newTestServer(t)
	alice, bob, chris := ts.register(t, "alice"), ts.register(t, "bob"), ts.register(t, "chris")
	ts.setInviteConfig(t, alice, map[string]any{"ignored_users": []string{"@bob:*"},
		"ignored_servers": []string{testServerName}, "allowed_users": []string{chris.ID}})
	since := covSync(t, ts, alice, "")["next_batch"].(string)

	fromBob := ts.createRoom(t, bob, map[string]any{"preset": "private_chat", "invite": []string{alice.ID}})
	other := ts.createRoom(t, bob, map[string]any{"preset": "private_chat"})
	ts.do(t, "POST", v3+"/rooms/"+url.PathEscape(other)+"/invite", bob.Token, map[string]any{"user_id": alice.ID}).wantStatus(t, 200)
	fromChris := ts.createRoom(t, chris, map[string]any{"preset": "private_chat", "invite": []string{alice.ID}})
	if m := ts.stateContent(t, bob, other, "m.room.member", alice.ID)["membership"]; m != "invite" {
		t.Errorf("the ignored invite is not stored: alice's membership %v", m)
	}

	for what, resp := range map[string]map[string]any{"incremental": covSync(t, ts, alice, since), "initial": covSync(t, ts, alice, "")} {
		inv := invitesIn(resp)
		if inv[fromChris] == nil {
			t.Errorf("%s sync: chris's allowed invite is missing", what)
		}
		if inv[fromBob] != nil || inv[other] != nil {
			t.Errorf("%s sync: bob's ignored invites are shown", what)
		}
	}

	ts.setInviteConfig(t, alice, map[string]any{})
	inv := invitesIn(covSync(t, ts, alice, ""))
	if inv[fromBob] == nil || inv[other] == nil {
		t.Errorf("with the config removed, bob's invites are not in alice's initial sync")
	}
}

// TestInviteFilterAdvertised: MSC4155 says servers tell clients that they
// enforce the config, through a capability, and /versions lists the MSC.
func TestInviteFilterAdvertised(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	caps, _ := ts.do(t, "GET", v3+"/capabilities", alice.Token, nil).json(t)["capabilities"].(map[string]any)
	enforced, _ := caps["org.matrix.msc4155.invite_permission_config_enforced"].(map[string]any)
	if enforced["enabled"] != true {
		t.Errorf("capabilities: org.matrix.msc4155.invite_permission_config_enforced = %v, want enabled", caps["org.matrix.msc4155.invite_permission_config_enforced"])
	}
}
