package matrix_test

import (
	"testing"
	"time"

	"github.com/hearth-chat/hearth/localapi/matrix"
)

const v3path = "/_matrix/client/v3"

func login(t *testing.T, ts *testServer, user, password string, extra map[string]any) *response {
	t.Helper()
	body := map[string]any{"type": "m.login.password", "password": password,
		"identifier": map[string]any{"type": "m.id.user", "user": user}}
	for k, v := range extra {
		body[k] = v
	}
	return ts.do(t, "POST", v3path+"/login", "", body)
}

func TestRefreshTokens(t *testing.T) {
	ts := newTestServer(t)
	u := ts.register(t, "alice")
	r := login(t, ts, "alice", u.Password, map[string]any{"refresh_token": true})
	r.wantStatus(t, 200)
	m := r.json(t)
	access, refresh := m["access_token"].(string), m["refresh_token"].(string)
	if refresh == "" || m["expires_in_ms"] == nil {
		t.Fatalf("login with refresh_token: %s", r.Body)
	}
	r = ts.do(t, "POST", v3path+"/refresh", "", map[string]any{"refresh_token": refresh})
	r.wantStatus(t, 200)
	newAccess, newRefresh := r.str(t, "access_token"), r.str(t, "refresh_token")
	ts.do(t, "GET", v3path+"/account/whoami", access, nil).wantError(t, 401, "M_UNKNOWN_TOKEN")
	ts.do(t, "POST", v3path+"/refresh", "", map[string]any{"refresh_token": refresh}).wantError(t, 401, "M_UNKNOWN_TOKEN")
	ts.do(t, "GET", v3path+"/account/whoami", newAccess, nil).wantStatus(t, 200)
	// A refresh token is not an access token.
	ts.do(t, "GET", v3path+"/account/whoami", newRefresh, nil).wantError(t, 401, "M_UNKNOWN_TOKEN")

	// An expired access token is a soft logout: the client refreshes.
	ts.Accounts.AccessTokenLifetime = 10 * time.Millisecond
	r = ts.do(t, "POST", v3path+"/refresh", "", map[string]any{"refresh_token": newRefresh})
	r.wantStatus(t, 200)
	time.Sleep(20 * time.Millisecond)
	e := ts.do(t, "GET", v3path+"/account/whoami", r.str(t, "access_token"), nil).wantError(t, 401, "M_UNKNOWN_TOKEN")
	if e["soft_logout"] != true {
		t.Fatalf("expired token without soft_logout: %v", e)
	}
	ts.do(t, "POST", v3path+"/refresh", "", map[string]any{"refresh_token": r.str(t, "refresh_token")}).wantStatus(t, 200)
}

func TestLoginToken(t *testing.T) {
	ts := newTestServer(t)
	u := ts.register(t, "alice")
	path := "/_matrix/client/v1/login/get_token"
	challenge := ts.do(t, "POST", path, u.Token, map[string]any{})
	challenge.wantStatus(t, 401)
	session := challenge.str(t, "session")
	ts.do(t, "POST", path, u.Token, map[string]any{"auth": map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": u.ID}, "password": "wrong", "session": session}}).
		wantError(t, 401, "M_FORBIDDEN")
	r := ts.do(t, "POST", path, u.Token, map[string]any{"auth": map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": u.ID}, "password": u.Password, "session": session}})
	r.wantStatus(t, 200)
	token := r.str(t, "login_token")
	r = ts.do(t, "POST", v3path+"/login", "", map[string]any{"type": "m.login.token", "token": token})
	r.wantStatus(t, 200)
	if r.str(t, "user_id") != u.ID {
		t.Fatalf("token login as %s", r.str(t, "user_id"))
	}
	ts.do(t, "POST", v3path+"/login", "", map[string]any{"type": "m.login.token", "token": token}).wantError(t, 403, "M_FORBIDDEN")
}

func TestRegistrationTokens(t *testing.T) {
	ts := newTestServer(t, matrix.Config{Registration: matrix.RegistrationToken, RegistrationTokens: []string{"let-me-in"}})
	body := func(auth map[string]any) map[string]any {
		return map[string]any{"username": "bob", "password": "pw", "auth": auth}
	}
	r := ts.do(t, "POST", v3path+"/register", "", body(nil))
	r.wantStatus(t, 401)
	if flows := r.json(t)["flows"].([]any); len(flows) != 1 ||
		flows[0].(map[string]any)["stages"].([]any)[0] != "m.login.registration_token" {
		t.Fatalf("flows %v", flows)
	}
	session := r.str(t, "session")
	ts.do(t, "POST", v3path+"/register", "", body(map[string]any{"type": "m.login.registration_token", "token": "guess", "session": session})).
		wantError(t, 401, "M_UNAUTHORIZED")
	ts.do(t, "POST", v3path+"/register", "", body(map[string]any{"type": "m.login.dummy", "session": session})).
		wantError(t, 401, "M_UNKNOWN") // a stage outside the flows fails the step
	r = ts.do(t, "POST", v3path+"/register", "", body(map[string]any{"type": "m.login.registration_token", "token": "let-me-in", "session": session}))
	r.wantStatus(t, 200)
	validity := "/_matrix/client/v1/register/m.login.registration_token/validity?token="
	if ts.do(t, "GET", validity+"let-me-in", "", nil).json(t)["valid"] != true ||
		ts.do(t, "GET", validity+"guess", "", nil).json(t)["valid"] != false {
		t.Fatal("token validity endpoint disagrees with registration")
	}
	closed := newTestServer(t, matrix.Config{Registration: matrix.RegistrationClosed})
	closed.do(t, "POST", v3path+"/register", "", body(map[string]any{"type": "m.login.dummy"})).wantError(t, 403, "M_FORBIDDEN")
}

func TestChangePassword(t *testing.T) {
	ts := newTestServer(t)
	u := ts.register(t, "alice")
	other := login(t, ts, "alice", u.Password, nil)
	other.wantStatus(t, 200)
	auth := func(password string) map[string]any {
		return map[string]any{"type": "m.login.password", "password": password,
			"identifier": map[string]any{"type": "m.id.user", "user": "alice"}}
	}
	ts.do(t, "POST", v3path+"/account/password", u.Token, map[string]any{"new_password": "new"}).wantStatus(t, 401)
	ts.do(t, "POST", v3path+"/account/password", u.Token, map[string]any{"new_password": "new", "auth": auth("wrong")}).
		wantError(t, 401, "M_FORBIDDEN")
	login(t, ts, "alice", u.Password, nil).wantStatus(t, 200) // unchanged so far
	ts.do(t, "POST", v3path+"/account/password", u.Token, map[string]any{"new_password": "new", "auth": auth(u.Password)}).
		wantStatus(t, 200)
	ts.do(t, "GET", v3path+"/account/whoami", u.Token, nil).wantStatus(t, 200)
	ts.do(t, "GET", v3path+"/account/whoami", other.str(t, "access_token"), nil).wantError(t, 401, "M_UNKNOWN_TOKEN")
	// logout_devices deletes the other devices, not just their tokens.
	devs := ts.do(t, "GET", v3path+"/devices", u.Token, nil).json(t)["devices"].([]any)
	if len(devs) != 1 || devs[0].(map[string]any)["device_id"] != u.DeviceID {
		t.Fatalf("devices after the password change: %v", devs)
	}
	login(t, ts, "alice", u.Password, nil).wantError(t, 403, "M_FORBIDDEN")
	login(t, ts, "alice", "new", nil).wantStatus(t, 200)
}
