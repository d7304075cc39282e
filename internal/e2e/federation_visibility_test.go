package e2e

import (
	"net/url"
	"testing"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// TestFederationServerHistoryVisibility: in a room whose history is for
// joined members only, the test peer joins after alice has talked; hs1
// then gives the peer's server none of what was said before, neither
// through /backfill nor /event, while a later message is served.
func TestFederationServerHistoryVisibility(t *testing.T) {
	t.Parallel()
	peer, hs1 := startWithPeer(t, false)
	alice := hs1.Register("alice")
	roomID := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat",
		InitialState: []*event.Event{{Type: event.StateHistoryVisibility,
			Content: event.Content{Parsed: &event.HistoryVisibilityEventContent{HistoryVisibility: event.HistoryVisibilityJoined}}}}})
	secret := SendText(t, alice, roomID, "said before the peer came")
	peer.join("mallory", string(roomID))
	waitMembership(t, alice, roomID, id.UserID(peer.mallory()), "mallory joined, as hs1 sees it", "join")
	later := SendText(t, alice, roomID, "said after")

	code, body := peer.do("GET", "hs1.test", "/_matrix/federation/v1/backfill/"+url.PathEscape(string(roomID))+
		"?limit=50&v="+url.QueryEscape(string(later)), nil, true)
	if code != 200 {
		t.Fatalf("backfill: HTTP %d %s", code, body)
	}
	served := map[string]bool{}
	for _, p := range gjson.GetBytes(body, "pdus").Array() {
		served[p.Get("content.body").String()] = true
	}
	if served["said before the peer came"] {
		t.Errorf("/backfill gave the peer a message from before it joined a joined-only room")
	}
	if !served["said after"] {
		t.Errorf("/backfill left out a message the peer may see: %s", body)
	}
	code, body = peer.do("GET", "hs1.test", "/_matrix/federation/v1/event/"+url.PathEscape(string(secret)), nil, true)
	if code != 404 {
		t.Errorf("/event of a message from before the peer joined: HTTP %d %s, want 404", code, body)
	}
	code, _ = peer.do("GET", "hs1.test", "/_matrix/federation/v1/event/"+url.PathEscape(string(later)), nil, true)
	if code != 200 {
		t.Errorf("/event of a message after the peer joined: HTTP %d, want 200", code)
	}
}
