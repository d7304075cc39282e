package matrix_test

import (
	"net/url"
	"testing"
)

// login logs u in again (optionally on a given device) and returns the
// new session as a user.
func (ts *testServer) login(t *testing.T, u *testUser, deviceID string) *testUser {
	t.Helper()
	body := map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": u.ID},
		"password": u.Password}
	if deviceID != "" {
		body["device_id"] = deviceID
	}
	r := ts.do(t, "POST", covV3+"/login", "", body)
	r.wantStatus(t, 200)
	return &testUser{ID: u.ID, Token: r.str(t, "access_token"), DeviceID: r.str(t, "device_id"), Password: u.Password}
}

// TestTxnIDScope: a transaction ID is scoped to the client session (the
// login, not the device ID) and the request path (Client-Server API
// §"Transaction identifiers"; Complement TestTxnIdempotency,
// TestTxnIdempotencyScopedToClientSession, TestTxnScopeOnLocalEcho,
// TestTxnInEvent).
func TestTxnIDScope(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	room1, room2 := ts.createRoom(t, alice, nil), ts.createRoom(t, alice, nil)
	send := func(u *testUser, roomID, txn, body string) string {
		t.Helper()
		return covSend(t, ts, u, roomID, "m.room.message", txn, map[string]any{"msgtype": "m.text", "body": body})
	}
	e1 := send(alice, room1, "abc", "first")
	if e2 := send(alice, room1, "abc", "first"); e2 != e1 {
		t.Errorf("a retry made a second event: %s, %s", e1, e2)
	}
	if e3 := send(alice, room1, "abc", "second"); e3 != e1 {
		t.Errorf("a retry with other content made a second event: %s, %s", e1, e3)
	}
	if e4 := send(alice, room2, "abc", "first"); e4 == e1 {
		t.Error("the same txn ID in another room returned the first room's event")
	}
	redact := func(u *testUser, roomID, eventID, txn string) string {
		t.Helper()
		r := ts.do(t, "PUT", covRoomPath(roomID)+"/redact/"+url.PathEscape(eventID)+"/"+txn, u.Token, map[string]any{})
		r.wantStatus(t, 200)
		return r.str(t, "event_id")
	}
	if r := redact(alice, room1, e1, "abc"); r == e1 {
		t.Error("a redaction with the message's txn ID returned the message")
	}
	ev := ts.do(t, "GET", covRoomPath(room1)+"/event/"+url.PathEscape(e1), alice.Token, nil)
	ev.wantStatus(t, 200)
	if u, _ := ev.json(t)["unsigned"].(map[string]any); u["transaction_id"] != "abc" {
		t.Errorf("GET /event by the sending session: unsigned %v, want transaction_id abc", u)
	}

	other := ts.login(t, alice, "")
	if e := send(other, room1, "abc", "first"); e == e1 {
		t.Error("another device's txn ID returned the first device's event")
	}
	same := ts.login(t, alice, alice.DeviceID) // a new login on the same device ID
	if e := send(same, room1, "abc", "first"); e == e1 {
		t.Error("a new login on the same device ID shares the old login's txn IDs")
	}
	ev = ts.do(t, "GET", covRoomPath(room1)+"/event/"+url.PathEscape(e1), same.Token, nil)
	ev.wantStatus(t, 200)
	if u, _ := ev.json(t)["unsigned"].(map[string]any); u["transaction_id"] != nil {
		t.Errorf("another session of the device sees the transaction_id: %v", u)
	}
}

// TestSetStateTwice: the same state (type, state key, sender, content)
// set twice is one event; other content is a new one (Complement
// TestRoomCreationReportsEventsToMyself "Setting state twice is
// idempotent").
func TestSetStateTwice(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	rid := ts.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	put := func(u *testUser, content map[string]any) string {
		t.Helper()
		r := ts.do(t, "PUT", covRoomPath(rid)+"/state/a.test.state.type/", u.Token, content)
		r.wantStatus(t, 200)
		return r.str(t, "event_id")
	}
	first := put(alice, map[string]any{"a_key": "a_value"})
	if again := put(alice, map[string]any{"a_key": "a_value"}); again != first {
		t.Errorf("identical state made a second event: %s, %s", first, again)
	}
	changed := put(alice, map[string]any{"a_key": "b_value"})
	if changed == first {
		t.Error("changed content returned the old event")
	}
	// Another sender setting the same content is a new event (if allowed).
	ts.do(t, "PUT", covRoomPath(rid)+"/state/m.room.power_levels/", alice.Token, map[string]any{
		"users": map[string]any{alice.ID: 100, bob.ID: 100}}).wantStatus(t, 200)
	covJoin(t, ts, bob, rid)
	if byBob := put(bob, map[string]any{"a_key": "b_value"}); byBob == changed {
		t.Error("bob's state event was answered with alice's")
	}
}

// TestTxnIDScopeSurvivesRefresh: refreshing the access token keeps the
// client session, so a retry after a refresh is still recognised.
func TestTxnIDScopeSurvivesRefresh(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	rid := ts.createRoom(t, alice, nil)
	r := ts.do(t, "POST", covV3+"/login", "", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": alice.ID}, "password": alice.Password, "refresh_token": true})
	r.wantStatus(t, 200)
	u := &testUser{ID: alice.ID, Token: r.str(t, "access_token")}
	content := map[string]any{"msgtype": "m.text", "body": "hi"}
	first := covSend(t, ts, u, rid, "m.room.message", "t1", content)
	rr := ts.do(t, "POST", covV3+"/refresh", "", map[string]any{"refresh_token": r.str(t, "refresh_token")})
	rr.wantStatus(t, 200)
	u.Token = rr.str(t, "access_token")
	if again := covSend(t, ts, u, rid, "m.room.message", "t1", content); again != first {
		t.Errorf("a retry after a refresh made a second event: %s, %s", first, again)
	}
}
