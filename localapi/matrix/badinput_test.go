package matrix_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/localapi/matrix"
)

const v3 = "/_matrix/client/v3"

// roomSnapshot is what a refused write must leave unchanged: the stream
// position, the room's whole timeline and its current state.
type roomSnapshot struct {
	Pos      uint64
	Timeline []string // event IDs, oldest first
	State    map[string]any
}

func (ts *testServer) snapshot(t testing.TB, u *testUser, roomID string) roomSnapshot {
	t.Helper()
	pos, _ := ts.Rooms.Pos()
	s := roomSnapshot{Pos: pos, State: map[string]any{}}
	r := ts.do(t, "GET", v3+"/rooms/"+url.PathEscape(roomID)+"/messages?dir=f&limit=1000", u.Token, nil)
	r.wantStatus(t, 200)
	for _, ev := range r.json(t)["chunk"].([]any) {
		s.Timeline = append(s.Timeline, ev.(map[string]any)["event_id"].(string))
	}
	r = ts.do(t, "GET", v3+"/rooms/"+url.PathEscape(roomID)+"/state", u.Token, nil)
	r.wantStatus(t, 200)
	var state []map[string]any
	if err := json.Unmarshal(r.Body, &state); err != nil {
		t.Fatal(err)
	}
	for _, ev := range state {
		s.State[fmt.Sprint(ev["type"], "|", ev["state_key"])] = ev["content"]
	}
	return s
}

func (s roomSnapshot) wantSame(t testing.TB, after roomSnapshot) {
	t.Helper()
	if !reflect.DeepEqual(s, after) {
		t.Fatalf("a refused write changed stored data:\nbefore %+v\nafter  %+v", s, after)
	}
}

// badInputServer is a server with one user and one room with a message.
type badInputServer struct {
	*testServer
	alice  *testUser
	bob    *testUser // not in the room
	roomID string
	rid    string // roomID escaped for paths
	event  string
}

func newBadInputServer(t *testing.T, cfg ...matrix.Config) *badInputServer {
	ts := newTestServer(t, cfg...)
	b := &badInputServer{testServer: ts, alice: ts.register(t, "alice"), bob: ts.register(t, "bob")}
	b.roomID = ts.createRoom(t, b.alice, map[string]any{"name": "Room", "topic": "before"})
	b.rid = url.PathEscape(b.roomID)
	b.event = ts.send(t, b.alice, b.roomID, "seed", "hello")
	return b
}

// refusedWrite sends a write that must be refused with status and errcode
// and checks that the room did not change.
func (b *badInputServer) refusedWrite(t *testing.T, method, path string, body any, status int, errcode string) {
	t.Helper()
	before := b.snapshot(t, b.alice, b.roomID)
	b.do(t, method, path, b.alice.Token, body).wantError(t, status, errcode)
	before.wantSame(t, b.snapshot(t, b.alice, b.roomID))
}

func deepJSON(depth int, open, close, leaf string) string {
	return strings.Repeat(open, depth) + leaf + strings.Repeat(close, depth)
}

func TestBadJSONBodies(t *testing.T) {
	b := newBadInputServer(t)
	send := v3 + "/rooms/" + b.rid + "/send/m.room.message/"
	state := v3 + "/rooms/" + b.rid + "/state/m.room.topic/"
	filter := v3 + "/user/" + url.PathEscape(b.alice.ID) + "/filter"

	writes := []struct {
		name, method, path string
		body               string
		status             int
		errcode            string
	}{
		{"send truncated", "PUT", send + "t1", `{"msgtype":"m.text","body":`, 400, "M_NOT_JSON"},
		{"send trailing garbage", "PUT", send + "t2", `{"body":"x"} {`, 400, "M_NOT_JSON"},
		{"send single quotes", "PUT", send + "t3", `{'body':'x'}`, 400, "M_NOT_JSON"},
		{"send array", "PUT", send + "t4", `[1,2]`, 400, "M_BAD_JSON"},
		{"send string", "PUT", send + "t5", `"hello"`, 400, "M_BAD_JSON"},
		{"send null", "PUT", send + "t6", `null`, 400, "M_BAD_JSON"},
		{"send invalid UTF-8", "PUT", send + "t7", "{\"msgtype\":\"m.text\",\"body\":\"\xff\xfe\"}", 400, "M_NOT_JSON"},
		{"send NUL byte", "PUT", send + "t8", "{\"body\":\"a\x00b\"}", 400, "M_NOT_JSON"},
		{"send deep arrays", "PUT", send + "t9", `{"a":` + deepJSON(10000, "[", "]", "1") + `}`, 400, "M_NOT_JSON"},
		{"send deep objects", "PUT", send + "t10", deepJSON(10001, `{"a":`, "}", "1"), 400, "M_NOT_JSON"},
		{"state truncated", "PUT", state, `{"topic":`, 400, "M_NOT_JSON"},
		{"state array", "PUT", state, `["topic"]`, 400, "M_BAD_JSON"},
		{"state invalid UTF-8", "PUT", state, "{\"topic\":\"\xc3\x28\"}", 400, "M_NOT_JSON"},
		{"state deep", "PUT", state, deepJSON(10001, `{"t":`, "}", `"x"`), 400, "M_NOT_JSON"},
		{"redact wrong type", "PUT", v3 + "/rooms/" + b.rid + "/redact/" + url.PathEscape(b.event) + "/r1", `{"reason":5}`, 400, "M_BAD_JSON"},
		{"typing wrong type", "PUT", v3 + "/rooms/" + b.rid + "/typing/" + url.PathEscape(b.alice.ID), `{"typing":"yes"}`, 400, "M_BAD_JSON"},
		{"kick wrong type", "POST", v3 + "/rooms/" + b.rid + "/kick", `{"user_id":["@bob:test.local"]}`, 400, "M_BAD_JSON"},
		{"invite not JSON", "POST", v3 + "/rooms/" + b.rid + "/invite", `user_id=@bob:test.local`, 400, "M_NOT_JSON"},
		{"createRoom truncated", "POST", v3 + "/createRoom", `{"name":"x"`, 400, "M_NOT_JSON"},
		{"createRoom name number", "POST", v3 + "/createRoom", `{"name":5}`, 400, "M_BAD_JSON"},
		{"createRoom invite string", "POST", v3 + "/createRoom", `{"invite":"@bob:test.local"}`, 400, "M_BAD_JSON"},
		{"createRoom initial_state object", "POST", v3 + "/createRoom", `{"initial_state":{}}`, 400, "M_BAD_JSON"},
		{"createRoom deep", "POST", v3 + "/createRoom", `{"creation_content":` + deepJSON(20000, `{"a":`, "}", "1") + `}`, 400, "M_NOT_JSON"},
		{"createRoom unsupported version", "POST", v3 + "/createRoom", `{"room_version":"no-such-version"}`, 400, "M_UNSUPPORTED_ROOM_VERSION"},
		{"filter wrong type", "POST", filter, `{"room":"all"}`, 400, "M_BAD_JSON"},
		{"filter negative limit", "POST", filter, `{"room":{"timeline":{"limit":-1}}}`, 400, "M_BAD_JSON"},
		{"filter not JSON", "POST", filter, `{room:{}}`, 400, "M_NOT_JSON"},
		{"account data not JSON", "PUT", v3 + "/user/" + url.PathEscape(b.alice.ID) + "/account_data/x.y", `{`, 400, "M_NOT_JSON"},
		{"profile wrong type", "PUT", v3 + "/profile/" + url.PathEscape(b.alice.ID) + "/displayname", `{"displayname":7}`, 400, "M_BAD_JSON"},
	}
	for _, tc := range writes {
		t.Run(tc.name, func(t *testing.T) {
			before := b.snapshot(t, b.alice, b.roomID)
			joined := b.do(t, "GET", v3+"/joined_rooms", b.alice.Token, nil).json(t)["joined_rooms"]
			b.do(t, tc.method, tc.path, b.alice.Token, tc.body).wantError(t, tc.status, tc.errcode)
			before.wantSame(t, b.snapshot(t, b.alice, b.roomID))
			if after := b.do(t, "GET", v3+"/joined_rooms", b.alice.Token, nil).json(t)["joined_rooms"]; !reflect.DeepEqual(joined, after) {
				t.Fatalf("a refused write changed joined rooms: %v → %v", joined, after)
			}
		})
	}

	// Bodies that are refused before login: login and register must not
	// create sessions or users.
	t.Run("login", func(t *testing.T) {
		for body, code := range map[string]string{
			`{"type":"m.login.password","user":`:             "M_NOT_JSON",
			`{"type":1}`:                                     "M_BAD_JSON",
			`{"type":"m.login.password","identifier":"bob"}`: "M_BAD_JSON",
			`["m.login.password"]`:                           "M_BAD_JSON",
			deepJSON(10001, `{"a":`, "}", "1"):               "M_NOT_JSON",
			"{\"type\":\"m.login.password\",\"user\":\"alice\",\"password\":\"\xff\"}": "M_NOT_JSON",
		} {
			b.do(t, "POST", v3+"/login", "", body).wantError(t, 400, code)
		}
		devices := b.do(t, "GET", v3+"/devices", b.alice.Token, nil).json(t)["devices"].([]any)
		if len(devices) != 1 {
			t.Fatalf("refused logins created devices: %v", devices)
		}
	})
	t.Run("register", func(t *testing.T) {
		for body, code := range map[string]string{
			`{"username":"carol","password":`:                 "M_NOT_JSON",
			`{"username":5,"password":"pw"}`:                  "M_BAD_JSON",
			`{"username":"carol","password":"pw","auth":"x"}`: "M_BAD_JSON",
		} {
			b.do(t, "POST", v3+"/register", "", body).wantError(t, 400, code)
		}
		if u, _ := b.Accounts.Get("carol"); u != nil {
			t.Fatal("a refused registration created the user")
		}
	})
}

// TestDeepJSON sends bodies nested around encoding/json's depth limit
// (10000) and far beyond it. Whatever the server decides, the answer must be
// a spec answer (200, or 400/413 with an errcode), and what it stored must
// stay readable.
func TestDeepJSON(t *testing.T) {
	b := newBadInputServer(t)
	paths := map[string]string{
		"send":        "PUT " + v3 + "/rooms/" + b.rid + "/send/m.room.message/",
		"state":       "PUT " + v3 + "/rooms/" + b.rid + "/state/org.example.deep/",
		"createRoom":  "POST " + v3 + "/createRoom",
		"filter":      "POST " + v3 + "/user/" + url.PathEscape(b.alice.ID) + "/filter",
		"login":       "POST " + v3 + "/login",
		"accountdata": "PUT " + v3 + "/user/" + url.PathEscape(b.alice.ID) + "/account_data/org.example.deep",
	}
	n := 0
	var filters []string
	for name, mp := range paths {
		for _, shape := range []struct {
			open, close, leaf string
			depths            []int
		}{
			// Bodies nested deeper than maxJSONDepth (128) are refused
			// before decoding.
			{`{"a":`, "}", "1", []int{100, 127, 128, 2000, 10001, 100000}},
			{"[", "]", "1", []int{100, 127, 128, 2000, 10000, 100000}},
		} {
			for _, depth := range shape.depths {
				body := `{"x":` + deepJSON(depth-1, shape.open, shape.close, shape.leaf) + `}`
				method, path, _ := strings.Cut(mp, " ")
				if name == "send" {
					n++
					path += fmt.Sprint("deep", n)
				}
				r := b.do(t, method, path, b.alice.Token, body)
				switch {
				case r.Status == 200:
					if id, ok := r.json(t)["filter_id"].(string); ok {
						filters = append(filters, id)
					}
				case r.Status == 400 || r.Status == 401 || r.Status == 403 || r.Status == 413:
					if code, _ := r.json(t)["errcode"].(string); !strings.HasPrefix(code, "M_") {
						t.Errorf("%s depth %d: status %d without an errcode: %.200s", name, depth, r.Status, r.Body)
					}
				default:
					t.Errorf("%s depth %d %s: status %d: %.200s", name, depth, shape.open, r.Status, r.Body)
				}
				if depth > 128 && r.Status != 400 {
					t.Errorf("%s depth %d: status %d, want 400 for JSON deeper than 128", name, depth, r.Status)
				}
			}
		}
	}
	// Whatever was stored can be read back.
	b.do(t, "GET", v3+"/rooms/"+b.rid+"/messages?dir=b&limit=100", b.alice.Token, nil).wantStatus(t, 200)
	b.do(t, "GET", v3+"/rooms/"+b.rid+"/state", b.alice.Token, nil).wantStatus(t, 200)
	b.do(t, "GET", v3+"/sync", b.alice.Token, nil).wantStatus(t, 200)
	b.do(t, "GET", v3+"/user/"+url.PathEscape(b.alice.ID)+"/account_data/org.example.deep", b.alice.Token, nil).wantStatus(t, 200)
	for _, id := range filters {
		if r := b.do(t, "GET", v3+"/sync?filter="+id, b.alice.Token, nil); r.Status != 200 && r.Status != 400 {
			t.Errorf("sync with stored filter %s: status %d: %.200s", id, r.Status, r.Body)
		}
	}
}

// TestBodyLimit checks M_TOO_LARGE: with a Content-Length over the limit
// the server answers without reading the body; without one (chunked), it
// stops reading at the limit.
func TestBodyLimit(t *testing.T) {
	const limit = 4096
	b := newBadInputServer(t, matrix.Config{Registration: matrix.RegistrationOpen, MaxBodyBytes: limit})
	path := v3 + "/rooms/" + b.rid + "/send/m.room.message/"
	big := `{"msgtype":"m.text","body":"` + strings.Repeat("x", 2*limit) + `"}`

	t.Run("content-length", func(t *testing.T) {
		b.refusedWrite(t, "PUT", path+"big1", big, 413, "M_TOO_LARGE")
	})
	t.Run("chunked", func(t *testing.T) {
		before := b.snapshot(t, b.alice, b.roomID)
		// An io.Reader of unknown length makes the client send chunked.
		req := b.newRequest(t, "PUT", path+"big2", b.alice.Token, io.MultiReader(strings.NewReader(big)))
		if req.ContentLength != 0 && req.ContentLength != -1 {
			t.Fatalf("request has Content-Length %d; want it unknown", req.ContentLength)
		}
		req.ContentLength = -1
		r := b.doRequest(t, req)
		r.wantError(t, 413, "M_TOO_LARGE")
		before.wantSame(t, b.snapshot(t, b.alice, b.roomID))
	})
	t.Run("at the limit is fine", func(t *testing.T) {
		body := `{"msgtype":"m.text","body":"` + strings.Repeat("y", limit-100) + `"}`
		b.do(t, "PUT", path+"ok", b.alice.Token, body).wantStatus(t, 200)
	})
	t.Run("refused before reading", func(t *testing.T) {
		// Announce 1 GiB and send none of it: a server that read before
		// refusing would wait for the body instead of answering.
		before := b.snapshot(t, b.alice, b.roomID)
		r := rawRequest(t, b.URL, "PUT "+path+"huge HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer "+b.alice.Token+
			"\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n")
		r.wantError(t, 413, "M_TOO_LARGE")
		before.wantSame(t, b.snapshot(t, b.alice, b.roomID))
	})
	t.Run("default limit", func(t *testing.T) {
		ts := newTestServer(t)
		r := rawRequest(t, ts.URL, "POST "+v3+"/login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"+
			"Content-Length: "+fmt.Sprint(1<<20+1)+"\r\n\r\n")
		r.wantError(t, 413, "M_TOO_LARGE")
	})
}

// rawRequest writes head (a request without its body) on a new connection
// and reads the answer. The deadline only keeps a broken server from
// hanging the test; no timing is asserted.
func rawRequest(t *testing.T, baseURL, head string) *response {
	t.Helper()
	u, err := url.Parse(baseURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no response without the body (does the server read before refusing?): %v", err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	method, path, _ := strings.Cut(strings.SplitN(head, " HTTP/", 2)[0], " ")
	return &response{Method: method, Path: path, Status: res.StatusCode, Header: res.Header, Body: body}
}

func TestUnknownRoomsAndEvents(t *testing.T) {
	b := newBadInputServer(t)
	unknownRoom := url.PathEscape("!unknown:" + testServerName)
	foreignRoom := url.PathEscape("!elsewhere:other.example")

	// Writes into rooms one is not in: 403, as for a room that does not
	// exist, so that existence does not leak.
	for _, tc := range []struct {
		name, method, path string
		body               any
		status             int
		errcode            string
	}{
		{"send unknown room", "PUT", v3 + "/rooms/" + unknownRoom + "/send/m.room.message/u1", map[string]any{"body": "x"}, 403, "M_FORBIDDEN"},
		{"send foreign room", "PUT", v3 + "/rooms/" + foreignRoom + "/send/m.room.message/u2", map[string]any{"body": "x"}, 403, "M_FORBIDDEN"},
		{"send not a room ID", "PUT", v3 + "/rooms/nonsense/send/m.room.message/u3", map[string]any{"body": "x"}, 403, "M_FORBIDDEN"},
		{"state unknown room", "PUT", v3 + "/rooms/" + unknownRoom + "/state/m.room.topic/", map[string]any{"topic": "x"}, 403, "M_FORBIDDEN"},
		{"redact unknown event", "PUT", v3 + "/rooms/" + b.rid + "/redact/$unknown/r1", map[string]any{}, 404, "M_NOT_FOUND"},
		{"invite into unknown room", "POST", v3 + "/rooms/" + unknownRoom + "/invite", map[string]any{"user_id": b.bob.ID}, 403, "M_FORBIDDEN"},
		{"join unknown room", "POST", v3 + "/rooms/" + unknownRoom + "/join", map[string]any{}, 404, "M_NOT_FOUND"},
		{"join unknown alias", "POST", v3 + "/join/" + url.PathEscape("#nope:"+testServerName), map[string]any{}, 404, "M_NOT_FOUND"},
		{"leave unknown room", "POST", v3 + "/rooms/" + unknownRoom + "/leave", map[string]any{}, 404, "M_NOT_FOUND"},
		{"receipt unknown event", "POST", v3 + "/rooms/" + b.rid + "/receipt/m.read/$unknown", map[string]any{}, 404, "M_NOT_FOUND"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.refusedWrite(t, tc.method, tc.path, tc.body, tc.status, tc.errcode)
		})
	}
	// Reads: 403 where the spec says "not a member", 404 for an unknown
	// event in a room one can see.
	for _, tc := range []struct {
		name, path, token string
		status            int
		errcode           string
	}{
		{"messages unknown room", v3 + "/rooms/" + unknownRoom + "/messages", b.alice.Token, 403, "M_FORBIDDEN"},
		{"messages not member", v3 + "/rooms/" + b.rid + "/messages", b.bob.Token, 403, "M_FORBIDDEN"},
		{"state unknown room", v3 + "/rooms/" + unknownRoom + "/state", b.alice.Token, 403, "M_FORBIDDEN"},
		{"state event unknown room", v3 + "/rooms/" + unknownRoom + "/state/m.room.name/", b.alice.Token, 403, "M_FORBIDDEN"},
		{"members unknown room", v3 + "/rooms/" + unknownRoom + "/members", b.alice.Token, 403, "M_FORBIDDEN"},
		{"event unknown", v3 + "/rooms/" + b.rid + "/event/$unknown", b.alice.Token, 404, "M_NOT_FOUND"},
		{"event of another room", v3 + "/rooms/" + unknownRoom + "/event/" + url.PathEscape(b.event), b.alice.Token, 404, "M_NOT_FOUND"},
		{"event not member", v3 + "/rooms/" + b.rid + "/event/" + url.PathEscape(b.event), b.bob.Token, 404, "M_NOT_FOUND"},
		{"context unknown event", v3 + "/rooms/" + b.rid + "/context/$unknown", b.alice.Token, 404, "M_NOT_FOUND"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.do(t, "GET", tc.path, tc.token, nil).wantError(t, tc.status, tc.errcode)
		})
	}
}

func TestAuthErrors(t *testing.T) {
	b := newBadInputServer(t)
	sendPath := v3 + "/rooms/" + b.rid + "/send/m.room.message/"
	before := b.snapshot(t, b.alice, b.roomID)
	b.do(t, "PUT", sendPath+"a1", "syt_forged_token", map[string]any{"body": "x"}).wantError(t, 401, "M_UNKNOWN_TOKEN")
	b.do(t, "PUT", sendPath+"a2", b.alice.Token+"x", map[string]any{"body": "x"}).wantError(t, 401, "M_UNKNOWN_TOKEN")
	b.do(t, "PUT", sendPath+"a3", "", map[string]any{"body": "x"}).wantError(t, 401, "M_MISSING_TOKEN")
	b.do(t, "GET", v3+"/sync?access_token=forged", "", nil).wantError(t, 401, "M_UNKNOWN_TOKEN")
	b.do(t, "GET", v3+"/sync", "", nil).wantError(t, 401, "M_MISSING_TOKEN")
	req := b.newRequest(t, "GET", v3+"/sync", "", nil)
	req.Header.Set("Authorization", "Basic YWxpY2U6cHc=")
	b.doRequest(t, req).wantStatus(t, 401)
	before.wantSame(t, b.snapshot(t, b.alice, b.roomID))

	// A logged-out token is unknown from then on.
	tok := b.do(t, "POST", v3+"/login", "", map[string]any{"type": "m.login.password", "user": "alice", "password": b.alice.Password}).str(t, "access_token")
	b.do(t, "POST", v3+"/logout", tok, map[string]any{}).wantStatus(t, 200)
	b.do(t, "GET", v3+"/account/whoami", tok, nil).wantError(t, 401, "M_UNKNOWN_TOKEN")
}

func TestRoutingErrors(t *testing.T) {
	b := newBadInputServer(t)
	before := b.snapshot(t, b.alice, b.roomID)
	defer func() { before.wantSame(t, b.snapshot(t, b.alice, b.roomID)) }()
	for _, p := range []string{v3 + "/no_such_endpoint", "/_matrix/client/v3", "/_matrix/client/r0/room_keys/version", "/_matrix/nope",
		v3 + "/rooms/" + b.rid + "/no_such_thing", "/"} {
		b.do(t, "GET", p, b.alice.Token, nil).wantError(t, 404, "M_UNRECOGNIZED")
	}
	for _, tc := range []struct{ method, path string }{
		{"GET", v3 + "/createRoom"},
		{"DELETE", v3 + "/createRoom"},
		{"POST", v3 + "/sync"},
		{"PUT", v3 + "/login"},
		{"POST", v3 + "/rooms/" + b.rid + "/send/m.room.message/x"},
		{"DELETE", "/_matrix/client/versions"},
	} {
		b.do(t, tc.method, tc.path, b.alice.Token, map[string]any{"body": "x"}).wantError(t, 405, "M_UNRECOGNIZED")
	}
}

func TestMalformedTokens(t *testing.T) {
	b := newBadInputServer(t)
	sync := b.do(t, "GET", v3+"/sync", b.alice.Token, nil)
	sync.wantStatus(t, 200)
	for _, since := range []string{"garbage", "s", "s_", "sx_1", "s1_x", "s-1_0", "t5", "s99999999999999999999_0",
		"s18446744073709551615_0" /* from the future */, "s1_2_3"} {
		b.do(t, "GET", v3+"/sync?since="+url.QueryEscape(since), b.alice.Token, nil).wantStatus(t, 400)
	}
	// The server's own token is accepted.
	b.do(t, "GET", v3+"/sync?timeout=0&since="+url.QueryEscape(sync.str(t, "next_batch")), b.alice.Token, nil).wantStatus(t, 200)

	msgs := v3 + "/rooms/" + b.rid + "/messages?dir=b&"
	for _, tok := range []string{"garbage", "t", "t-1", "tx", "t1.5", "s", "sx", "99", "t99999999999999999999"} {
		b.do(t, "GET", msgs+"from="+url.QueryEscape(tok), b.alice.Token, nil).wantStatus(t, 400)
		b.do(t, "GET", msgs+"to="+url.QueryEscape(tok), b.alice.Token, nil).wantStatus(t, 400)
	}
	for _, q := range []string{"dir=x", "limit=-1", "limit=ten", "filter=%7B", "filter=%5B%5D"} {
		b.do(t, "GET", v3+"/rooms/"+b.rid+"/messages?"+q, b.alice.Token, nil).wantStatus(t, 400)
	}
	for _, q := range []string{"timeout=-5", "timeout=soon", "set_presence=busy", "filter=%7Bbad", "filter=nosuchfilter"} {
		b.do(t, "GET", v3+"/sync?"+q, b.alice.Token, nil).wantStatus(t, 400)
	}
}

func TestRegistrationRefusals(t *testing.T) {
	ts := newTestServer(t)
	ts.register(t, "alice")
	dummy := map[string]any{"type": "m.login.dummy"}
	reg := func(body map[string]any, query string) *response {
		return ts.do(t, "POST", v3+"/register"+query, "", body)
	}
	users := func() int {
		l, err := ts.Accounts.List()
		if err != nil {
			t.Fatal(err)
		}
		return len(l)
	}
	n := users()

	reg(map[string]any{"username": "guesty", "password": "pw", "auth": dummy}, "?kind=guest").wantError(t, 403, "M_GUEST_ACCESS_FORBIDDEN")
	for _, name := range []string{"with space", "semi;colon", "at@sign", "colon:name", "émile", "tab\tname", "new\nline",
		"slash\\back", "#hash", "!bang", "null\x00byte", strings.Repeat("a", 250)} {
		reg(map[string]any{"username": name, "password": "pw", "auth": dummy}, "").wantError(t, 400, "M_INVALID_USERNAME")
		ts.do(t, "GET", v3+"/register/available?username="+url.QueryEscape(name), "", nil).wantError(t, 400, "M_INVALID_USERNAME")
	}
	for _, name := range []string{"alice", "ALICE", "Alice"} {
		reg(map[string]any{"username": name, "password": "pw", "auth": dummy}, "").wantError(t, 400, "M_USER_IN_USE")
		ts.do(t, "GET", v3+"/register/available?username="+name, "", nil).wantError(t, 400, "M_USER_IN_USE")
	}
	// No password: refused after the UIA stage.
	reg(map[string]any{"username": "nopass", "auth": dummy}, "").wantError(t, 400, "M_MISSING_PARAM")
	if got := users(); got != n {
		t.Fatalf("refused registrations changed the user count: %d → %d", n, got)
	}

	t.Run("closed", func(t *testing.T) {
		ts := newTestServer(t, matrix.Config{Registration: matrix.RegistrationClosed})
		ts.do(t, "POST", v3+"/register", "", map[string]any{"username": "x", "password": "pw", "auth": dummy}).wantError(t, 403, "M_FORBIDDEN")
		if l, _ := ts.Accounts.List(); len(l) != 0 {
			t.Fatal("closed registration created a user")
		}
	})
}

func TestUnsupportedRoomVersion(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	pos, _ := ts.Rooms.Pos()
	for _, v := range []string{"999", "", "1.0", "org.example.custom"} {
		if v == "" {
			continue
		}
		ts.do(t, "POST", v3+"/createRoom", alice.Token, map[string]any{"room_version": v, "name": "x"}).
			wantError(t, 400, "M_UNSUPPORTED_ROOM_VERSION")
	}
	if p, _ := ts.Rooms.Pos(); p != pos {
		t.Fatalf("refused createRoom moved the stream: %d → %d", pos, p)
	}
	if rooms := ts.do(t, "GET", v3+"/joined_rooms", alice.Token, nil).json(t)["joined_rooms"].([]any); len(rooms) != 0 {
		t.Fatalf("refused createRoom left rooms: %v", rooms)
	}
	// The versions the server advertises are accepted.
	caps := ts.do(t, "GET", v3+"/capabilities", alice.Token, nil).json(t)["capabilities"].(map[string]any)
	for v := range caps["m.room_versions"].(map[string]any)["available"].(map[string]any) {
		ts.do(t, "POST", v3+"/createRoom", alice.Token, map[string]any{"room_version": v}).wantStatus(t, 200)
	}
}

// TestCORS checks the headers the spec's "Web Browser Clients" section
// requires, on preflights and on ordinary answers, errors included.
func TestCORS(t *testing.T) {
	ts := newTestServer(t)
	check := func(t *testing.T, h http.Header) {
		t.Helper()
		if got := h.Get("Access-Control-Allow-Origin"); got != "*" {
			t.Errorf("Access-Control-Allow-Origin = %q, want *", got)
		}
		methods := h.Get("Access-Control-Allow-Methods")
		for _, m := range []string{"GET", "POST", "PUT", "DELETE", "OPTIONS"} {
			if !strings.Contains(methods, m) {
				t.Errorf("Access-Control-Allow-Methods %q lacks %s", methods, m)
			}
		}
		headers := strings.ToLower(h.Get("Access-Control-Allow-Headers"))
		for _, hd := range []string{"x-requested-with", "content-type", "authorization"} {
			if !strings.Contains(headers, hd) {
				t.Errorf("Access-Control-Allow-Headers %q lacks %s", headers, hd)
			}
		}
	}
	for _, p := range []string{v3 + "/sync", v3 + "/createRoom", v3 + "/rooms/!x:test.local/send/m.room.message/1", "/_matrix/client/versions", v3 + "/nope"} {
		t.Run("preflight "+p, func(t *testing.T) {
			req := ts.newRequest(t, "OPTIONS", p, "", nil)
			req.Header.Set("Origin", "https://app.example")
			req.Header.Set("Access-Control-Request-Method", "PUT")
			req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
			r := ts.doRequest(t, req)
			if r.Status != 200 && r.Status != 204 {
				t.Fatalf("preflight status %d", r.Status)
			}
			check(t, r.Header)
		})
	}
	t.Run("on answers", func(t *testing.T) {
		check(t, ts.do(t, "GET", "/_matrix/client/versions", "", nil).Header)
		check(t, ts.do(t, "GET", v3+"/sync", "", nil).Header) // 401
		check(t, ts.do(t, "GET", v3+"/nope", "", nil).Header) // 404
	})
}

// TestEmptyBodies checks that endpoints whose body is optional accept none,
// and that a whitespace-only body is the same as none.
func TestEmptyBodies(t *testing.T) {
	b := newBadInputServer(t)
	b.do(t, "POST", v3+"/rooms/"+b.rid+"/join", b.alice.Token, nil).wantStatus(t, 200)
	b.do(t, "POST", v3+"/rooms/"+b.rid+"/join", b.alice.Token, " \n").wantStatus(t, 200)
	// An empty send is an event with empty content, which the spec allows.
	b.do(t, "PUT", v3+"/rooms/"+b.rid+"/send/m.room.message/e1", b.alice.Token, bytes.NewReader(nil)).wantStatus(t, 200)
}
