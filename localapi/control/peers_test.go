package control

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
)

// peersBackend is stubBackend with LAN discovery on and one peer whose
// key changed; the decisions it is asked for are recorded.
type peersBackend struct {
	stubBackend
	off       bool
	decisions []string
}

func (b *peersBackend) Peers() PeersStatus {
	return PeersStatus{Enabled: !b.off, Peers: []Peer{{ServerName: "bob.local", KeyChanged: true}}}
}

func (b *peersBackend) DecidePeerKey(_ context.Context, name string, accept bool) (bool, error) {
	if name != "bob.local" {
		return false, nil
	}
	b.decisions = append(b.decisions, map[bool]string{true: "accept", false: "refuse"}[accept])
	return true, nil
}

// TestPeerKeyDecision: POST /_hearth/v1/peers/{name}/accept and /refuse
// reach the backend with the owner's credential and from a console
// session (the console offers both buttons); a name not listed with a
// changed key is 404 not_found, LAN discovery off is 409; a session still
// cannot forget pins, and no other path under peers/ opens to it.
func TestPeerKeyDecision(t *testing.T) {
	b := &peersBackend{}
	srv := New(b, secret)
	owner := http.Header{"Authorization": {"Bearer " + secret}}
	tok := login(t, srv)
	for _, tc := range []struct {
		path   string
		header http.Header
		want   int
	}{
		{"/_hearth/v1/peers/bob.local/refuse", owner, 200},
		{"/_hearth/v1/peers/bob.local/accept", asSession(tok), 200},
		{"/_hearth/v1/peers/nobody.local/accept", owner, 404},
		{"/_hearth/v1/peers/bob.local/forget", asSession(tok), 401},
		{"/_hearth/v1/peers/bob.local/accept/x", asSession(tok), 401},
		{"/_hearth/v1/peers/bob.local/accept", nil, 401},
	} {
		w := call(t, srv, "POST", tc.path, "", tc.header)
		if w.Code != tc.want {
			t.Errorf("POST %s: %d %s, want %d", tc.path, w.Code, w.Body, tc.want)
		}
		if tc.want == 200 {
			var res DecideResult
			if json.Unmarshal(w.Body.Bytes(), &res) != nil || res.ServerName != "bob.local" {
				t.Errorf("POST %s: %s", tc.path, w.Body)
			}
		}
	}
	if len(b.decisions) != 2 || b.decisions[0] != "refuse" || b.decisions[1] != "accept" {
		t.Errorf("decisions %v, want [refuse accept]", b.decisions)
	}
	b.off = true
	if w := call(t, srv, "POST", "/_hearth/v1/peers/bob.local/accept", "", owner); w.Code != 409 {
		t.Errorf("discovery off: %d %s", w.Code, w.Body)
	}
}
