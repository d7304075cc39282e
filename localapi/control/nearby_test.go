package control

import (
	"context"
	"strings"
	"testing"
)

// TestPeopleNearbyLine: the people of every peer, named by display name
// (else localpart) and a short server name, at most max of them.
func TestPeopleNearbyLine(t *testing.T) {
	peers := []Peer{
		{ServerName: "anna-laptop-t4bori.local", People: []Person{{UserID: "@anna:anna-laptop-t4bori.local", DisplayName: "Anna"}}},
		{ServerName: "quiet.local"},
		{ServerName: "ben.example.org", People: []Person{{UserID: "@bob:ben.example.org", DisplayName: "Bob Builder"}, {UserID: "@zed:ben.example.org"}}},
	}
	for _, c := range []struct {
		max  int
		want string
	}{
		{5, "People nearby: Anna (anna-laptop-…), Bob Builder (ben.example.org), zed (ben.example.org)"},
		{1, "People nearby: Anna (anna-laptop-…) and 2 more"},
	} {
		if got := PeopleNearby(peers, c.max); got != c.want {
			t.Errorf("max %d: %q, want %q", c.max, got, c.want)
		}
	}
	if got := PeopleNearby(peers[1:2], 5); got != "" {
		t.Errorf("no people: %q", got)
	}
}

// nearbyBackend is stubBackend with the people-nearby switch, recording
// what it was asked.
type nearbyBackend struct {
	stubBackend
	on map[string]bool
}

func (b nearbyBackend) SetNearby(_ context.Context, name string, on bool) (string, error) {
	b.on[name] = on
	return "@" + name + ":test", nil
}

func (b nearbyBackend) NearbyAccounts() ([]string, error) { return []string{"@owner:test"}, nil }

// TestConsoleSwitchesNearby: the console's session may list and switch
// the people-nearby opt-in (the issue asks the console to), and still not
// create accounts; a body without name or nearby is refused unchanged.
func TestConsoleSwitchesNearby(t *testing.T) {
	b := nearbyBackend{on: map[string]bool{}}
	srv := New(b, secret)
	tok := login(t, srv)
	if w := call(t, srv, "GET", "/_hearth/v1/accounts/nearby", "", asSession(tok)); w.Code != 200 || !strings.Contains(w.Body.String(), "@owner:test") {
		t.Errorf("GET nearby as the console: %d %s", w.Code, w.Body)
	}
	if w := call(t, srv, "POST", "/_hearth/v1/accounts/nearby", `{"name":"zed","nearby":true}`, asSession(tok)); w.Code != 200 || !b.on["zed"] {
		t.Errorf("POST nearby as the console: %d %s", w.Code, w.Body)
	}
	for _, body := range []string{`{"name":"zed"}`, `{"nearby":false}`, `{"name":"zed","nearby":"no"}`} {
		if w := call(t, srv, "POST", "/_hearth/v1/accounts/nearby", body, asSession(tok)); w.Code != 400 || !b.on["zed"] {
			t.Errorf("POST nearby %s: %d %s, want 400 and no change", body, w.Code, w.Body)
		}
	}
	if w := call(t, srv, "POST", "/_hearth/v1/accounts/nearby", `{"name":"zed","nearby":false}`, nil); w.Code != 401 || !b.on["zed"] {
		t.Errorf("POST nearby without credentials: %d", w.Code)
	}
	if w := call(t, srv, "POST", "/_hearth/v1/accounts", `{"name":"x"}`, asSession(tok)); w.Code != 401 {
		t.Errorf("the console created an account: %d", w.Code)
	}
}
