package federation

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"
)

// TestParseSignedEventIDs: the event ID parseSigned computes from the
// bytes the signatures cover is the one gomatrixserverlib computes, in
// every room version it knows (but pseudonymous IDs), for messages,
// state events, membership events, content needing escapes, and an event
// failing its content hash (which arrives redacted under the same ID).
func TestParseSignedEventIDs(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	for v, ver := range gomatrixserverlib.RoomVersions() {
		if v == gomatrixserverlib.RoomVersionPseudoIDs {
			continue
		}
		roomID := "!room:peer.test"
		if ver.DomainlessRoomIDs() {
			roomID = "!" + strings.Repeat("A", 43)
		}
		empty := ""
		bob := "@bob:peer.test"
		for i, c := range []struct {
			typ      string
			stateKey *string
			content  map[string]any
		}{
			{"m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "hello"}},
			{"m.room.message", nil, map[string]any{"body": "é \"quoted\" \\ \u2028 <tag> 😀", "n": 9007199254740991, "nested": map[string]any{"z": 1, "a": []any{true, nil}}}},
			{"m.room.topic", &empty, map[string]any{"topic": "a topic"}},
			{"m.room.member", &bob, map[string]any{"membership": "join", "displayname": "Bob"}},
			{"m.room.power_levels", &empty, map[string]any{"users": map[string]any{"@bob:peer.test": 100}, "redact": 50}},
		} {
			eb := ver.NewEventBuilder()
			eb.SenderID, eb.RoomID, eb.Type, eb.StateKey = "@bob:peer.test", roomID, c.typ, c.stateKey
			eb.PrevEvents, eb.AuthEvents, eb.Depth = []string{"$prev:peer.test"}, []string{"$auth:peer.test"}, 7
			if ver.StateDAGs() {
				eb.PrevStateEvents = &[]string{"$state:peer.test"}
			}
			if err := eb.SetContent(c.content); err != nil {
				t.Fatal(err)
			}
			built, err := eb.Build(time.Now(), "peer.test", "ed25519:p", key)
			if err != nil {
				t.Fatalf("v%s event %d: %v", v, i, err)
			}
			tampered := bytes.Replace(built.JSON(), []byte(`"content":{`), []byte(`"content":{"tampered":1,`), 1)
			for _, raw := range [][]byte{built.JSON(), tampered} {
				want, err := ver.NewEventFromUntrustedJSON(raw)
				if err != nil {
					t.Fatalf("v%s event %d: gomatrixserverlib refuses it: %v", v, i, err)
				}
				got, signed, err := parseSigned(v, roomID, raw)
				if err != nil {
					t.Fatalf("v%s event %d: %v", v, i, err)
				}
				if got.EventID() != want.EventID() || got.Redacted() != want.Redacted() || !bytes.Equal(got.JSON(), want.JSON()) {
					t.Errorf("v%s event %d: parsed as %s (redacted %v), gomatrixserverlib says %s (redacted %v)",
						v, i, got.EventID(), got.Redacted(), want.EventID(), want.Redacted())
				}
				redacted, _ := ver.RedactEventJSON(want.JSON())
				sig, _ := gomatrixserverlib.SignJSON("peer.test", "ed25519:p", key, redacted)
				// The bytes parseSigned returns are those gomatrixserverlib
				// signs: its signature over the redacted event verifies
				// over them.
				if !signedByOver(t, sig, key, signed) {
					t.Errorf("v%s event %d: gomatrixserverlib's signature does not cover the signing bytes", v, i)
				}
			}
		}
	}
}

// signedByOver reports whether the "peer.test" signature in signedJSON
// verifies over msg.
func signedByOver(t *testing.T, signedJSON []byte, key ed25519.PrivateKey, msg []byte) bool {
	t.Helper()
	var s spec.Base64Bytes
	if err := s.Decode(gjson.GetBytes(signedJSON, `signatures.peer\.test.ed25519:p`).String()); err != nil {
		t.Fatal(err)
	}
	return ed25519.Verify(key.Public().(ed25519.PublicKey), msg, s)
}

// TestVerifySignedAgreesWithKeyRing: verifySigned, which accepts an
// event signed by its sender's server with a cached key without
// gomatrixserverlib's JSON round trips, accepts and refuses exactly what
// gomatrixserverlib.VerifyEventSignatures does: a good message; one
// signed by another key under the peer's key ID; one sent after the
// peer's key stopped being valid (the room version's validity rule); one
// whose sender is of a server that did not sign it; one carrying no
// signature; and membership events, which only gomatrixserverlib checks
// (an invite must be signed by the invitee's server too).
func TestVerifySignedAgreesWithKeyRing(t *testing.T) {
	r := newIngestRoom(t) // mallory's join fetched and cached peer.test's key
	ctx := context.Background()
	_, other, _ := ed25519.GenerateKey(nil)
	ver := gomatrixserverlib.MustGetRoomVersion(r.f.roomV[r.id])
	build := func(sender, typ string, stateKey *string, content map[string]any, now time.Time, key ed25519.PrivateKey) []byte {
		eb := ver.NewEventBuilder()
		eb.SenderID, eb.RoomID, eb.Type, eb.StateKey = sender, r.id, typ, stateKey
		eb.PrevEvents, eb.Depth = []string{r.prev}, r.depth+1
		eb.AuthEvents = []string{r.auth[0].EventID(), r.auth[1].EventID(), r.auth[2].EventID()}
		if err := eb.SetContent(content); err != nil {
			t.Fatal(err)
		}
		pdu, err := eb.Build(now, fzPeer, r.f.peerID, key)
		if err != nil {
			t.Fatal(err)
		}
		return pdu.JSON()
	}
	msg := map[string]any{"msgtype": "m.text", "body": "hi"}
	now := time.Now()
	carol, dave := "@carol:"+fzPeer, "@dave:other.test"
	good := build(r.sender, "m.room.message", nil, msg, now, r.f.peerSK)
	cases := []struct {
		name   string
		raw    []byte
		wantOK bool
	}{
		{"good", good, true},
		{"signed by another key", build(r.sender, "m.room.message", nil, msg, now, other), false},
		{"sent after the key's validity", build(r.sender, "m.room.message", nil, msg, now.Add(3*time.Hour), r.f.peerSK), false},
		{"sender of another server", build("@eve:other.test", "m.room.message", nil, msg, now, r.f.peerSK), false},
		{"no signatures", bytes.Replace(good, []byte(`"signatures":{"`+fzPeer+`"`), []byte(`"signatures":{"x.test"`), 1), false},
		{"membership, signed", build(carol, "m.room.member", &carol, map[string]any{"membership": "join"}, now, r.f.peerSK), true},
		{"membership, another key", build(carol, "m.room.member", &carol, map[string]any{"membership": "join"}, now, other), false},
		{"invite not signed by the invitee's server", build(r.sender, "m.room.member", &dave, map[string]any{"membership": "invite"}, now, r.f.peerSK), false},
	}
	for _, c := range cases {
		keys := newSigKeys(r.f.svc.cfg.KeyRing)
		pdu, signed, err := parseSigned(ver.Version(), r.id, c.raw)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		want := gomatrixserverlib.VerifyEventSignatures(ctx, pdu, r.f.svc.cfg.KeyRing, userIDForSender)
		got := r.f.svc.verifySigned(ctx, ver, pdu, signed, keys)
		if (want == nil) != c.wantOK {
			t.Fatalf("%s: gomatrixserverlib says %v, the case expects ok=%v", c.name, want, c.wantOK)
		}
		if (got == nil) != (want == nil) {
			t.Errorf("%s: verifySigned says %v, gomatrixserverlib %v", c.name, got, want)
		}
		if got != nil && want != nil && got.Error() != want.Error() {
			t.Errorf("%s: verifySigned's error %q, gomatrixserverlib's %q", c.name, got, want)
		}
	}
}
