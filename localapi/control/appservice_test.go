package control

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// appsBackend is the console stub plus the appservices part.
type appsBackend struct {
	stubBackend
	list []Appservice
}

func (b *appsBackend) Appservices() []Appservice { return b.list }

func (b *appsBackend) AddAppservice(reg string) (Appservice, error) {
	if !strings.Contains(reg, "id:") {
		return Appservice{}, &Error{Status: 400, Code: "invalid_registration", Message: "id is required"}
	}
	a := Appservice{ID: "br", SenderUserID: "@brbot:test"}
	b.list = append(b.list, a)
	return a, nil
}

func (b *appsBackend) RemoveAppservice(id string) error {
	if len(b.list) == 0 || b.list[0].ID != id {
		return &Error{Status: 404, Code: "not_found", Message: "no appservice " + id}
	}
	b.list = nil
	return nil
}

// TestAppserviceEndpoints: the secret adds, lists and removes
// appservices, bad input is a 400 with the reason; a console session only
// reads the list (for the page's Bridges section); a backend without
// appservices answers 404.
func TestAppserviceEndpoints(t *testing.T) {
	b := &appsBackend{}
	srv := New(b, secret)
	owner := http.Header{"Authorization": {"Bearer " + secret}}
	if w := call(t, srv, "POST", "/_hearth/v1/appservices", `{"registration":"url: x"}`, owner); w.Code != 400 ||
		!strings.Contains(w.Body.String(), "id is required") {
		t.Fatalf("bad registration: %d %s", w.Code, w.Body)
	}
	if w := call(t, srv, "POST", "/_hearth/v1/appservices", `{"registration":"id: br"}`, owner); w.Code != 200 {
		t.Fatalf("add: %d %s", w.Code, w.Body)
	}
	tok := login(t, srv)
	w := call(t, srv, "GET", "/_hearth/v1/appservices", "", asSession(tok))
	var out struct{ Appservices []Appservice }
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &out) != nil || len(out.Appservices) != 1 || out.Appservices[0].ID != "br" {
		t.Fatalf("list as the console: %d %s", w.Code, w.Body)
	}
	if w := call(t, srv, "POST", "/_hearth/v1/appservices", `{"registration":"id: x"}`, asSession(tok)); w.Code != 401 {
		t.Fatalf("a console session added an appservice: %d", w.Code)
	}
	if w := call(t, srv, "DELETE", "/_hearth/v1/appservices/br", "", asSession(tok)); w.Code != 401 {
		t.Fatalf("a console session removed an appservice: %d", w.Code)
	}
	if w := call(t, srv, "DELETE", "/_hearth/v1/appservices/br", "", owner); w.Code != 200 {
		t.Fatalf("remove: %d %s", w.Code, w.Body)
	}
	if w := call(t, srv, "DELETE", "/_hearth/v1/appservices/br", "", owner); w.Code != 404 {
		t.Fatalf("remove twice: %d %s", w.Code, w.Body)
	}
	if w := call(t, New(stubBackend{}, secret), "GET", "/_hearth/v1/appservices", "", owner); w.Code != 404 {
		t.Fatalf("without appservices: %d", w.Code)
	}
}
