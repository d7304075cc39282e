package matrix_test

import (
	"net/url"
	"testing"
)

// TestDeletedDeviceLosesPushers: a pusher goes with the device whose
// access token set it, whichever way the device goes (POST /logout,
// DELETE /devices/{deviceId}, POST /logout/all), as a password change
// that logs out the other devices already does: a phone that logged out
// must not keep getting its user's messages pushed to it. The pushers of
// devices that stay are kept.
func TestDeletedDeviceLosesPushers(t *testing.T) {
	ps := newPushServer(t)
	ts := ps.testServer
	alice := ts.register(t, "alice")
	setPusher := func(u *testUser, key string) {
		t.Helper()
		ts.do(t, "POST", pushV3+"/pushers/set", u.Token, map[string]any{
			"kind": "http", "app_id": "org.example.app", "pushkey": key, "app_display_name": "App",
			"device_display_name": "Phone", "lang": "en", "data": map[string]any{"url": "http://127.0.0.1:9/_matrix/push/v1/notify"},
		}).wantStatus(t, 200)
	}
	pushkeys := func() map[string]bool {
		t.Helper()
		list, err := ps.Push.Pushers(alice.ID)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, p := range list {
			out[p.Pushkey] = true
		}
		return out
	}
	phone, tablet, laptop := ts.login(t, alice, ""), ts.login(t, alice, ""), ts.login(t, alice, "")
	setPusher(phone, "phone")
	setPusher(tablet, "tablet")
	setPusher(laptop, "laptop")

	ts.do(t, "POST", v3path+"/logout", phone.Token, map[string]any{}).wantStatus(t, 200)
	if got := pushkeys(); got["phone"] || !got["tablet"] || !got["laptop"] {
		t.Errorf("after the phone logged out: pushers %v, want tablet and laptop", got)
	}
	ts.do(t, "DELETE", v3path+"/devices/"+url.PathEscape(tablet.DeviceID), alice.Token, map[string]any{
		"auth": map[string]any{"type": "m.login.password", "user": alice.ID, "password": alice.Password}}).wantStatus(t, 200)
	if got := pushkeys(); got["tablet"] || !got["laptop"] {
		t.Errorf("after the tablet was deleted: pushers %v, want laptop", got)
	}
	ts.do(t, "POST", v3path+"/logout/all", alice.Token, map[string]any{}).wantStatus(t, 200)
	if got := pushkeys(); len(got) != 0 {
		t.Errorf("after logging out everywhere: pushers %v, want none", got)
	}
}
