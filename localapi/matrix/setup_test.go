package matrix_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
	"github.com/hearth-chat/hearth/localapi/matrix"
)

// testServerName is the server name every test server runs as.
const testServerName = "test.local"

// testServer is the Client-Server API over a real bbolt store in a temp
// dir, wired as daemon.Start wires it: the store's commit hook advances the
// notifier that /sync waits on.
type testServer struct {
	URL      string
	API      *matrix.Server
	DB       *store.DB
	Rooms    *room.Engine
	Accounts *account.Accounts
	http     *httptest.Server
}

// newTestServer starts a server with open registration; cfg may change
// that and the body limit.
func newTestServer(t testing.TB, cfg ...matrix.Config) *testServer {
	t.Helper()
	c := matrix.Config{Registration: matrix.RegistrationOpen}
	if len(cfg) > 0 {
		c = cfg[0]
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	st, err := room.Open(room.Options{Path: filepath.Join(t.TempDir(), "hearth.db"),
		Engine: room.Config{ServerName: testServerName, KeyID: "ed25519:test", PrivateKey: key}})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	db := st.DB
	ts := &testServer{DB: db, Rooms: st.Engine}
	ts.Accounts = account.New(db, testServerName)
	ts.API = matrix.New(ts.Accounts, ts.Rooms, c)
	ts.http = httptest.NewServer(ts.API)
	ts.URL = ts.http.URL
	t.Cleanup(func() {
		ts.http.Close()
		ts.API.Close()
		db.Close()
	})
	return ts
}

// testUser is a registered, logged-in user.
type testUser struct {
	ID       string
	Token    string
	DeviceID string
	Password string
}

// register creates localpart through POST /register (with the dummy UIA
// stage) and returns the logged-in user.
func (ts *testServer) register(t testing.TB, localpart string) *testUser {
	t.Helper()
	const password = "correct horse battery staple"
	r := ts.do(t, "POST", "/_matrix/client/v3/register", "", map[string]any{
		"username": localpart, "password": password, "auth": map[string]any{"type": "m.login.dummy"},
	})
	r.wantStatus(t, 200)
	return &testUser{ID: r.str(t, "user_id"), Token: r.str(t, "access_token"), DeviceID: r.str(t, "device_id"), Password: password}
}

// createRoom creates a room as u and returns its ID.
func (ts *testServer) createRoom(t testing.TB, u *testUser, body map[string]any) string {
	t.Helper()
	if body == nil {
		body = map[string]any{}
	}
	r := ts.do(t, "POST", "/_matrix/client/v3/createRoom", u.Token, body)
	r.wantStatus(t, 200)
	return r.str(t, "room_id")
}

// send sends an m.room.message with body text and returns its event ID.
func (ts *testServer) send(t testing.TB, u *testUser, roomID, txn, text string) string {
	t.Helper()
	r := ts.do(t, "PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/send/m.room.message/"+txn, u.Token,
		map[string]any{"msgtype": "m.text", "body": text})
	r.wantStatus(t, 200)
	return r.str(t, "event_id")
}

// response is a finished request: status, headers and the body read whole.
type response struct {
	Method string
	Path   string // the request's URL path, unescaped
	Status int
	Header http.Header
	Body   []byte
}

// do sends a request. body is sent as is if it is a []byte, string or
// io.Reader, else marshalled to JSON; nil sends no body. token, if not
// empty, goes in the Authorization header.
func (ts *testServer) do(t testing.TB, method, path, token string, body any) *response {
	t.Helper()
	req := ts.newRequest(t, method, path, token, body)
	return ts.doRequest(t, req)
}

func (ts *testServer) newRequest(t testing.TB, method, path, token string, body any) *http.Request {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	case io.Reader:
		rd = b
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("marshal body: %v", err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, ts.URL+path, rd)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}

func (ts *testServer) doRequest(t testing.TB, req *http.Request) *response {
	t.Helper()
	res, err := ts.http.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", req.Method, req.URL.Path, err)
	}
	return &response{Method: req.Method, Path: req.URL.Path, Status: res.StatusCode, Header: res.Header, Body: b}
}

// json decodes the body as a JSON object, failing the test if it is not one.
func (r *response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil || m == nil {
		t.Fatalf("%s %s: body is not a JSON object (%v): %.300s", r.Method, r.Path, err, r.Body)
	}
	return m
}

// str returns a string field of the body.
func (r *response) str(t testing.TB, key string) string {
	t.Helper()
	s, ok := r.json(t)[key].(string)
	if !ok {
		t.Fatalf("%s %s: %q is not a string in %.300s", r.Method, r.Path, key, r.Body)
	}
	return s
}

func (r *response) wantStatus(t testing.TB, status int) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("%s %s: status %d, want %d; body %.500s", r.Method, r.Path, r.Status, status, r.Body)
	}
}

// wantError checks a Matrix error response: the status, the errcode and
// that the body is the spec's error object.
func (r *response) wantError(t testing.TB, status int, errcode string) map[string]any {
	t.Helper()
	r.wantStatus(t, status)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s %s: Content-Type %q, want application/json", r.Method, r.Path, ct)
	}
	m := r.json(t)
	if got, _ := m["errcode"].(string); got != errcode {
		t.Fatalf("%s %s: errcode %q, want %q; body %.500s", r.Method, r.Path, got, errcode, r.Body)
	}
	if _, ok := m["error"].(string); !ok {
		t.Errorf("%s %s: error message missing or not a string: %.300s", r.Method, r.Path, r.Body)
	}
	return m
}
