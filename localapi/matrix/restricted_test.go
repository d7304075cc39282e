package matrix_test

import (
	"net/url"
	"testing"
)

// errcode is the errcode of an error response.
func (r *response) errcode(t testing.TB) string {
	t.Helper()
	s, _ := r.json(t)["errcode"].(string)
	return s
}

// TestRestrictedJoinOverClientAPI: POST /join to a restricted room
// (Client-Server API §"Restricted rooms") lets in a member of the allowed
// room, refuses a stranger with 403 M_FORBIDDEN, and, when no local user
// may invite and federation cannot help, refuses with 403 (keeping the
// M_UNABLE_TO_GRANT_JOIN errcode), never a 400 or 500.
func TestRestrictedJoinOverClientAPI(t *testing.T) {
	ts := newTestServer(t)
	alice, bob, carol, dave := ts.register(t, "alice"), ts.register(t, "bob"), ts.register(t, "carol"), ts.register(t, "dave")
	club := ts.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	lounge := ts.createRoom(t, alice, map[string]any{"preset": "public_chat", "room_version": "10",
		"power_level_content_override": map[string]any{"invite": 100, "users": map[string]any{alice.ID: 100}},
		"invite":                       []string{carol.ID},
		"initial_state": []map[string]any{{"type": "m.room.join_rules", "state_key": "",
			"content": map[string]any{"join_rule": "knock_restricted", "allow": []map[string]any{{"type": "m.room_membership", "room_id": club}}}}},
	})
	joinPath := func(roomID string) string { return "/_matrix/client/v3/join/" + url.PathEscape(roomID) }

	r := ts.do(t, "POST", joinPath(lounge), dave.Token, map[string]any{})
	if r.Status != 403 || r.errcode(t) != "M_FORBIDDEN" {
		t.Fatalf("stranger's join: %d %s", r.Status, r.Body)
	}
	ts.do(t, "POST", joinPath(club), bob.Token, map[string]any{}).wantStatus(t, 200)
	ts.do(t, "POST", joinPath(lounge), bob.Token, map[string]any{}).wantStatus(t, 200)
	r = ts.do(t, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(lounge)+"/state/m.room.member/"+url.PathEscape(bob.ID), bob.Token, nil)
	r.wantStatus(t, 200)
	if via := r.str(t, "join_authorised_via_users_server"); via != alice.ID {
		t.Errorf("bob's join authorised via %q, want %s", via, alice.ID)
	}

	// carol (invited, level 0) stays; alice, the only one who may invite, leaves.
	ts.do(t, "POST", joinPath(lounge), carol.Token, map[string]any{}).wantStatus(t, 200)
	ts.do(t, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(lounge)+"/leave", alice.Token, map[string]any{}).wantStatus(t, 200)
	ts.do(t, "POST", joinPath(club), dave.Token, map[string]any{}).wantStatus(t, 200)
	r = ts.do(t, "POST", joinPath(lounge), dave.Token, map[string]any{})
	if r.Status != 403 || r.errcode(t) != "M_UNABLE_TO_GRANT_JOIN" {
		t.Fatalf("join nobody here may vouch for: %d %s, want 403 M_UNABLE_TO_GRANT_JOIN", r.Status, r.Body)
	}
}
