package matrix_test

import (
	"net/url"
	"testing"
)

// TestDeactivateAccount: a wrong password is a 401 UIA challenge carrying
// M_FORBIDDEN and changes nothing; the right one deactivates: the user has
// left the room and declined the invite, every token is dead, the password
// gets M_USER_DEACTIVATED, the profile is gone, the user is out of the
// directory, and the name stays taken. The response matches the spec.
func TestDeactivateAccount(t *testing.T) {
	sp := loadSpec(t)
	ts := newTestServer(t)
	c := specChecker{ts, sp}
	alice := ts.register(t, "alice")
	bob := ts.register(t, "bob")
	shared := ts.createRoom(t, bob, map[string]any{"preset": "public_chat"})
	ts.do(t, "POST", v3path+"/join/"+url.PathEscape(shared), alice.Token, map[string]any{}).wantStatus(t, 200)
	invited := ts.createRoom(t, bob, map[string]any{"invite": []string{alice.ID}})
	second := login(t, ts, "alice", alice.Password, nil)
	second.wantStatus(t, 200)
	secondToken := second.str(t, "access_token")

	deactivate := func(password string) *response {
		return c.call(t, "POST", v3path+"/account/deactivate", alice.Token, map[string]any{
			"auth": map[string]any{"type": "m.login.password", "user": alice.ID, "password": password},
		})
	}
	r := deactivate("wrong password")
	r.wantStatus(t, 401)
	if m := r.json(t); m["errcode"] != "M_FORBIDDEN" || m["flows"] == nil {
		t.Fatalf("wrong password: %s, want a UIA challenge with M_FORBIDDEN", r.Body)
	}
	ts.do(t, "GET", v3path+"/account/whoami", alice.Token, nil).wantStatus(t, 200)

	r = deactivate(alice.Password)
	r.wantStatus(t, 200)
	if got := r.str(t, "id_server_unbind_result"); got != "no-support" {
		t.Errorf("id_server_unbind_result %q, want no-support", got)
	}

	for _, tok := range []string{alice.Token, secondToken} {
		ts.do(t, "GET", v3path+"/account/whoami", tok, nil).wantError(t, 401, "M_UNKNOWN_TOKEN")
	}
	login(t, ts, "alice", alice.Password, nil).wantError(t, 403, "M_USER_DEACTIVATED")
	login(t, ts, "alice", "guess", nil).wantError(t, 403, "M_USER_DEACTIVATED")
	ts.do(t, "GET", v3path+"/register/available?username=alice", "", nil).wantError(t, 400, "M_USER_IN_USE")
	ts.do(t, "POST", v3path+"/register", "", map[string]any{"username": "alice", "password": "another one",
		"auth": map[string]any{"type": "m.login.dummy"}}).wantError(t, 400, "M_USER_IN_USE")
	ts.do(t, "GET", v3path+"/profile/"+url.PathEscape(alice.ID), "", nil).wantError(t, 404, "M_NOT_FOUND")

	for _, roomID := range []string{shared, invited} {
		r := ts.do(t, "GET", v3path+"/rooms/"+url.PathEscape(roomID)+"/state/m.room.member/"+url.PathEscape(alice.ID), bob.Token, nil)
		r.wantStatus(t, 200)
		if m := r.str(t, "membership"); m != "leave" {
			t.Errorf("alice's membership in %s is %q after deactivation, want leave", roomID, m)
		}
	}
	r = ts.do(t, "POST", v3path+"/user_directory/search", bob.Token, map[string]any{"search_term": "alice"})
	r.wantStatus(t, 200)
	if res := r.json(t)["results"].([]any); len(res) != 0 {
		t.Errorf("user directory still finds alice: %v", res)
	}
}

// TestDeactivateNeedsAuth: without an auth object the answer is the UIA
// challenge and the account stays as it was.
func TestDeactivateNeedsAuth(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	r := ts.do(t, "POST", v3path+"/account/deactivate", alice.Token, map[string]any{"erase": true})
	r.wantStatus(t, 401)
	if r.json(t)["session"] == nil {
		t.Fatalf("no UIA session in %s", r.Body)
	}
	ts.do(t, "GET", v3path+"/account/whoami", alice.Token, nil).wantStatus(t, 200)
	login(t, ts, "alice", alice.Password, nil).wantStatus(t, 200)
	ts.do(t, "POST", v3path+"/account/deactivate", alice.Token, `{"erase": "yes"}`).wantError(t, 400, "M_BAD_JSON")
}

// messagesOf returns the content of each event of typ from sender in the
// room's history as u reads it.
func (ts *testServer) contentsFrom(t testing.TB, u *testUser, roomID, sender, typ string) []map[string]any {
	t.Helper()
	r := ts.do(t, "GET", v3path+"/rooms/"+url.PathEscape(roomID)+"/messages?dir=b&limit=100", u.Token, nil)
	r.wantStatus(t, 200)
	var out []map[string]any
	for _, x := range r.json(t)["chunk"].([]any) {
		ev := x.(map[string]any)
		if ev["sender"] == sender && ev["type"] == typ {
			out = append(out, ev["content"].(map[string]any))
		}
	}
	return out
}

// TestDeactivateErase: after alice deactivates with erase, bob, who was in
// the room, still reads her message; carol, who joins afterwards, gets it
// redacted, through /messages and /event. Without erase (dave), a late
// joiner reads everything.
func TestDeactivateErase(t *testing.T) {
	ts := newTestServer(t)
	alice, bob, carol, dave := ts.register(t, "alice"), ts.register(t, "bob"), ts.register(t, "carol"), ts.register(t, "dave")
	roomID := ts.createRoom(t, bob, map[string]any{"preset": "public_chat"})
	ts.join(t, alice, roomID)
	ts.join(t, dave, roomID)
	secret := ts.send(t, alice, roomID, "a1", "alice's secret")
	ts.send(t, dave, roomID, "d1", "dave's words")
	for _, u := range []*testUser{alice, dave} {
		ts.do(t, "POST", v3path+"/account/deactivate", u.Token, map[string]any{"erase": u == alice,
			"auth": map[string]any{"type": "m.login.password", "user": u.ID, "password": u.Password}}).wantStatus(t, 200)
	}
	ts.join(t, carol, roomID)

	if got := ts.contentsFrom(t, bob, roomID, alice.ID, "m.room.message"); len(got) != 1 || got[0]["body"] != "alice's secret" {
		t.Errorf("bob, in the room before the erasure, reads %v", got)
	}
	if got := ts.contentsFrom(t, carol, roomID, alice.ID, "m.room.message"); len(got) != 1 || len(got[0]) != 0 {
		t.Errorf("carol, who joined after the erasure, reads %v, want empty content", got)
	}
	r := ts.do(t, "GET", v3path+"/rooms/"+url.PathEscape(roomID)+"/event/"+url.PathEscape(secret), carol.Token, nil)
	r.wantStatus(t, 200)
	if c := r.json(t)["content"].(map[string]any); len(c) != 0 {
		t.Errorf("/event serves carol %v", c)
	}
	if got := ts.contentsFrom(t, carol, roomID, dave.ID, "m.room.message"); len(got) != 1 || got[0]["body"] != "dave's words" {
		t.Errorf("carol reads dave (no erase) as %v", got)
	}
}

// TestDeactivateRemovesPushers: a deactivated user's pushers are gone, so
// nothing is pushed to their phone any more.
func TestDeactivateRemovesPushers(t *testing.T) {
	ps := newPushServer(t)
	ts := ps.testServer
	alice := ts.register(t, "alice")
	ts.do(t, "POST", pushV3+"/pushers/set", alice.Token, map[string]any{
		"kind": "http", "app_id": "org.example.app", "pushkey": "key1", "app_display_name": "App",
		"device_display_name": "Phone", "lang": "en", "data": map[string]any{"url": "http://127.0.0.1:9/_matrix/push/v1/notify"},
	}).wantStatus(t, 200)
	if list, _ := ps.Push.Pushers(alice.ID); len(list) != 1 {
		t.Fatalf("pushers before: %v", list)
	}
	ts.do(t, "POST", v3path+"/account/deactivate", alice.Token, map[string]any{
		"auth": map[string]any{"type": "m.login.password", "user": alice.ID, "password": alice.Password}}).wantStatus(t, 200)
	if list, err := ps.Push.Pushers(alice.ID); err != nil || len(list) != 0 {
		t.Errorf("pushers after deactivation: %v %v", list, err)
	}
}
