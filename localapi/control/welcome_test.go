package control

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// firstRunBackend records the passwords the control API let through.
type firstRunBackend struct {
	stubBackend
	set   []string
	shown int
}

func (b *firstRunBackend) Welcome() (Welcome, error) {
	return Welcome{UserID: "@owner:test", Homeserver: "http://127.0.0.1:1", CanSetPassword: len(b.set) == 0}, nil
}

func (b *firstRunBackend) SetFirstPassword(pw string) (string, error) {
	b.set = append(b.set, pw)
	return "@owner:test", nil
}

func (b *firstRunBackend) WelcomeShown() (bool, error) {
	b.shown++
	return b.shown == 1, nil
}

// TestWelcomeScope: a console session reads the welcome and sets the first
// password (the backend decides whether it may), but cannot mark the
// welcome shown (the tray's, with the secret); weak passwords are 400
// weak_password and never reach the backend.
func TestWelcomeScope(t *testing.T) {
	b := &firstRunBackend{}
	srv := New(b, secret)
	tok := login(t, srv)
	w := call(t, srv, "GET", "/_hearth/v1/welcome", "", asSession(tok))
	var wel Welcome
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &wel) != nil || wel.UserID != "@owner:test" || !wel.CanSetPassword {
		t.Fatalf("welcome: %d %s", w.Code, w.Body)
	}
	for _, weak := range []string{"", "seven77", strings.Repeat("a", 73)} {
		body, _ := json.Marshal(map[string]string{"password": weak})
		w := call(t, srv, "POST", "/_hearth/v1/welcome/password", string(body), asSession(tok))
		var e Error
		json.Unmarshal(w.Body.Bytes(), &e)
		if w.Code != 400 || e.Field != "password" {
			t.Errorf("password %q: %d %s", weak, w.Code, w.Body)
		}
	}
	if len(b.set) != 0 {
		t.Fatalf("weak passwords reached the backend: %q", b.set)
	}
	if w := call(t, srv, "POST", "/_hearth/v1/welcome/password", `{"password":"eight888"}`, asSession(tok)); w.Code != 200 || len(b.set) != 1 {
		t.Fatalf("an 8-character password: %d %s", w.Code, w.Body)
	}
	if w := call(t, srv, "POST", "/_hearth/v1/welcome/password", `{"password":"eight888"}`, nil); w.Code != 401 {
		t.Fatalf("without a session: %d", w.Code)
	}
	if w := call(t, srv, "POST", "/_hearth/v1/welcome/shown", "", asSession(tok)); w.Code != 401 || b.shown != 0 {
		t.Fatalf("a session marked the welcome shown: %d", w.Code)
	}
	owner := http.Header{"Authorization": {"Bearer " + secret}}
	for i, want := range []string{`"first":true`, `"first":false`} {
		w := call(t, srv, "POST", "/_hearth/v1/welcome/shown", "", owner)
		if w.Code != 200 || !strings.Contains(w.Body.String(), want) {
			t.Fatalf("welcome/shown call %d: %d %s", i+1, w.Code, w.Body)
		}
	}
}
