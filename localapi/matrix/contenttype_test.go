package matrix_test

import (
	"net/url"
	"testing"
)

// A body labelled as anything but JSON (what HTML forms and a page's
// simple cross-origin requests send) is refused with M_NOT_JSON and logs
// nobody in; JSON, with parameters or unlabelled, is read.
func TestJSONEndpointsRefuseOtherContentTypes(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	devices := func() int {
		r := ts.do(t, "GET", v3path+"/devices", alice.Token, nil)
		r.wantStatus(t, 200)
		return len(r.json(t)["devices"].([]any))
	}
	before := devices()
	body := `{"type":"m.login.password","identifier":{"type":"m.id.user","user":"alice"},"password":"` + alice.Password + `"}`
	for _, ct := range []string{"text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
		"multipart/form-data; boundary=x", "application/jsonp", "not a media type"} {
		req := ts.newRequest(t, "POST", v3path+"/login", "", body)
		req.Header.Set("Content-Type", ct)
		ts.doRequest(t, req).wantError(t, 400, "M_NOT_JSON")
	}
	if n := devices(); n != before {
		t.Fatalf("refused logins made devices: %d, want %d", n, before)
	}
	// A send labelled text/plain with the token in the query string (what
	// a form could post, had it the token) changes nothing either.
	roomID := ts.createRoom(t, alice, nil)
	req := ts.newRequest(t, "PUT", v3path+"/rooms/"+url.PathEscape(roomID)+"/send/m.room.message/t1?access_token="+
		url.QueryEscape(alice.Token), "", `{"msgtype":"m.text","body":"hi"}`)
	req.Header.Set("Content-Type", "text/plain")
	ts.doRequest(t, req).wantError(t, 400, "M_NOT_JSON")
	req = ts.newRequest(t, "GET", v3path+"/rooms/"+url.PathEscape(roomID)+"/messages?dir=b&limit=50", alice.Token, nil)
	for _, ev := range ts.doRequest(t, req).json(t)["chunk"].([]any) {
		if ev.(map[string]any)["type"] == "m.room.message" {
			t.Fatal("a text/plain send was stored")
		}
	}

	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON", ""} {
		req := ts.newRequest(t, "POST", v3path+"/login", "", body)
		if ct == "" {
			req.Header.Del("Content-Type")
		} else {
			req.Header.Set("Content-Type", ct)
		}
		ts.doRequest(t, req).wantStatus(t, 200)
	}
	// An empty body with a form's label is still the empty object some
	// endpoints allow (curl -d '' sends one).
	req = ts.newRequest(t, "POST", v3path+"/rooms/"+url.PathEscape(roomID)+"/leave", alice.Token, "")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	ts.doRequest(t, req).wantStatus(t, 200)
}

// matrix-js-sdk's Rust crypto (Element Web, Element Desktop) sends the
// request of a verification in a DM ("Verify user") as a JSON string that
// fetch labels text/plain;charset=UTF-8. With the token in the
// Authorization header such a request is read: no form and no simple
// cross-origin request can carry that header, so the label says nothing
// about one. The body must still be a JSON object.
func TestAuthorizedJSONLabelledTextPlain(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	roomID := ts.createRoom(t, alice, nil)
	request := `{"msgtype":"m.key.verification.request","body":"alice wants to verify you","to":"@bob:` +
		testServerName + `","from_device":"ALICEDEV","methods":["m.sas.v1"]}`
	req := ts.newRequest(t, "PUT", v3path+"/rooms/"+url.PathEscape(roomID)+"/send/m.room.message/v1", alice.Token, request)
	req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	res := ts.doRequest(t, req)
	res.wantStatus(t, 200)
	eventID, _ := res.json(t)["event_id"].(string)
	req = ts.newRequest(t, "GET", v3path+"/rooms/"+url.PathEscape(roomID)+"/event/"+url.PathEscape(eventID), alice.Token, nil)
	res = ts.doRequest(t, req)
	res.wantStatus(t, 200)
	content, _ := res.json(t)["content"].(map[string]any)
	if content["msgtype"] != "m.key.verification.request" || content["from_device"] != "ALICEDEV" {
		t.Fatalf("the stored request: %v", content)
	}

	// Still JSON only: not JSON is M_NOT_JSON, not an object M_BAD_JSON,
	// and nothing is stored.
	for body, code := range map[string]string{"hello bob": "M_NOT_JSON", `["a"]`: "M_BAD_JSON"} {
		req := ts.newRequest(t, "PUT", v3path+"/rooms/"+url.PathEscape(roomID)+"/send/m.room.message/bad-"+code, alice.Token, body)
		req.Header.Set("Content-Type", "text/plain")
		ts.doRequest(t, req).wantError(t, 400, code)
	}
	req = ts.newRequest(t, "GET", v3path+"/rooms/"+url.PathEscape(roomID)+"/messages?dir=b&limit=50", alice.Token, nil)
	n := 0
	for _, ev := range ts.doRequest(t, req).json(t)["chunk"].([]any) {
		if ev.(map[string]any)["type"] == "m.room.message" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d messages stored, want the one verification request", n)
	}
}
