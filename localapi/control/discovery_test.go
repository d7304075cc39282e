package control

import (
	"encoding/json"
	"net/http"
	"testing"
)

// discoveryBackend is stubBackend with the LAN discovery switch; like the
// daemon's, it refuses a mode other than on, browse or off unchanged.
type discoveryBackend struct {
	stubBackend
	mode *string
}

func (b discoveryBackend) SetDiscoveryMode(mode string) error {
	switch mode {
	case "on", "browse", "off":
		*b.mode = mode
		return nil
	}
	return BadRequest("mode", "lan_discovery must be on, browse or off")
}

func (b discoveryBackend) Discovery() DiscoveryStatus {
	return DiscoveryStatus{Mode: *b.mode, Running: *b.mode != "off"}
}

// TestConsoleSwitchesDiscovery: a console session may read and switch the
// LAN discovery mode (the console shows it beside the federation mode,
// issue 11), a bad mode is 400 and changes nothing, and the session still
// cannot write lan_discovery — or any other setting — through the config.
func TestConsoleSwitchesDiscovery(t *testing.T) {
	mode := "on"
	srv := New(discoveryBackend{mode: &mode}, secret)
	tok := login(t, srv)

	w := call(t, srv, "GET", "/_hearth/v1/discovery", "", asSession(tok))
	var st DiscoveryStatus
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &st) != nil || st.Mode != "on" {
		t.Fatalf("GET discovery as the console: %d %s", w.Code, w.Body)
	}
	w = call(t, srv, "POST", "/_hearth/v1/discovery/mode", `{"mode":"browse"}`, asSession(tok))
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &st) != nil || st.Mode != "browse" || mode != "browse" {
		t.Fatalf("POST discovery/mode as the console: %d %s (mode %s)", w.Code, w.Body, mode)
	}
	for _, body := range []string{`{"mode":"loud"}`, `{"mode":""}`, `{"mode":"off","x":1}`, `not json`} {
		if w := call(t, srv, "POST", "/_hearth/v1/discovery/mode", body, asSession(tok)); w.Code != 400 || mode != "browse" {
			t.Errorf("POST discovery/mode %s: %d %s (mode %s), want 400 and no change", body, w.Code, w.Body, mode)
		}
	}
	for _, tc := range []struct{ method, path, body string }{
		{"PUT", "/_hearth/v1/config/lan_discovery", `{"value":"off"}`},
		{"PUT", "/_hearth/v1/config/lan_interfaces", `{"value":"eth0"}`},
		{"POST", "/_hearth/v1/federation/pause", ""},
		{"POST", "/_hearth/v1/peers/bob.local/forget", ""},
	} {
		if w := call(t, srv, tc.method, tc.path, tc.body, asSession(tok)); w.Code != 401 {
			t.Errorf("%s %s as the console: %d, want 401", tc.method, tc.path, w.Code)
		}
	}
	if w := call(t, srv, "POST", "/_hearth/v1/discovery/mode", `{"mode":"off"}`, nil); w.Code != 401 || mode != "browse" {
		t.Errorf("POST discovery/mode without credentials: %d (mode %s)", w.Code, mode)
	}
	owner := http.Header{"Authorization": {"Bearer " + secret}}
	if w := call(t, srv, "POST", "/_hearth/v1/discovery/mode", `{"mode":"off"}`, owner); w.Code != 200 || mode != "off" {
		t.Errorf("POST discovery/mode as the owner: %d (mode %s)", w.Code, mode)
	}
}
