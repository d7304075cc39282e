package matrix_test

import "testing"

// TestLoginAnyCase: the user part of a login may be in any case, bare or
// as a full user ID, and the session is the lowercase user's.
func TestLoginAnyCase(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	for _, user := range []string{"@Alice:test.local", "ALICE", "@ALICE:test.local"} {
		r := ts.do(t, "POST", covV3+"/login", "", map[string]any{"type": "m.login.password",
			"identifier": map[string]any{"type": "m.id.user", "user": user}, "password": alice.Password})
		r.wantStatus(t, 200)
		if got := r.str(t, "user_id"); got != alice.ID {
			t.Errorf("login as %s: user_id %s, want %s", user, got, alice.ID)
		}
		who := ts.do(t, "GET", covV3+"/account/whoami", r.str(t, "access_token"), nil)
		who.wantStatus(t, 200)
		if got := who.str(t, "user_id"); got != alice.ID {
			t.Errorf("whoami after logging in as %s: %s", user, got)
		}
	}
	ts.do(t, "POST", covV3+"/login", "", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": "@Alice:test.local"}, "password": "wrong"}).wantError(t, 403, "M_FORBIDDEN")
}
