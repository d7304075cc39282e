package matrix_test

import (
	"net/url"
	"testing"
)

// passwordAuth is a UIA m.login.password stage as user.
func passwordAuth(user, password string) map[string]any {
	return map[string]any{"type": "m.login.password", "password": password,
		"identifier": map[string]any{"type": "m.id.user", "user": user}}
}

// TestDeleteDeviceOwnerOnly: deleting a device needs UIA as the device's
// owner — authenticating as another user is 403 and the device stays
// (Complement TestDeviceManagement "DELETE /device/{deviceId} requires UI
// auth user to match device owner") — and another user's device ID is
// not found among the caller's.
func TestDeleteDeviceOwnerOnly(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	second := ts.login(t, alice, "")
	path := covV3 + "/devices/" + url.PathEscape(second.DeviceID)

	ts.do(t, "DELETE", path, alice.Token, map[string]any{"auth": passwordAuth(bob.ID, bob.Password)}).wantError(t, 403, "M_FORBIDDEN")
	ts.do(t, "GET", path, alice.Token, nil).wantStatus(t, 200)
	ts.do(t, "DELETE", path, alice.Token, map[string]any{"auth": passwordAuth(alice.ID, "wrong")}).wantError(t, 401, "M_FORBIDDEN")
	ts.do(t, "DELETE", covV3+"/devices/"+url.PathEscape(bob.DeviceID), alice.Token,
		map[string]any{"auth": passwordAuth(alice.ID, alice.Password)}).wantError(t, 404, "M_NOT_FOUND")
	ts.do(t, "GET", covV3+"/account/whoami", bob.Token, nil).wantStatus(t, 200)
	ts.do(t, "DELETE", path, alice.Token, map[string]any{"auth": passwordAuth(alice.ID, alice.Password)}).wantStatus(t, 200)
	ts.do(t, "GET", path, alice.Token, nil).wantError(t, 404, "M_NOT_FOUND")
	ts.do(t, "GET", covV3+"/account/whoami", second.Token, nil).wantError(t, 401, "M_UNKNOWN_TOKEN")
}

// TestPasswordChangeRemovesOtherPushers: a password change that logs the
// other devices out removes their pushers and keeps the caller's
// (Complement TestChangePasswordPushers).
func TestPasswordChangeRemovesOtherPushers(t *testing.T) {
	ps := newPushServer(t)
	alice := ps.register(t, "alice")
	other := ps.login(t, alice, "")
	pusher := func(u *testUser, key string) {
		t.Helper()
		ps.do(t, "POST", covV3+"/pushers/set", u.Token, map[string]any{"kind": "http", "app_id": "org.example.app",
			"pushkey": key, "app_display_name": "Example", "device_display_name": "Phone", "lang": "en",
			"data": map[string]any{"url": "https://push.example.org/_matrix/push/v1/notify"}}).wantStatus(t, 200)
	}
	pusher(other, "theirs")
	pusher(alice, "mine")
	ps.do(t, "POST", covV3+"/account/password", alice.Token, map[string]any{"new_password": "new password",
		"auth": passwordAuth(alice.ID, alice.Password)}).wantStatus(t, 200)
	r := ps.do(t, "GET", covV3+"/pushers", alice.Token, nil)
	r.wantStatus(t, 200)
	list := r.json(t)["pushers"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["pushkey"] != "mine" {
		t.Fatalf("pushers after the password change: %v", list)
	}
	if _, ok := list[0].(map[string]any)["hearth_device"]; ok {
		t.Errorf("the pusher's device leaks to clients: %v", list[0])
	}
}
