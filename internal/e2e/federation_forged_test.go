package e2e

import (
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// The inbound checks of federation (Server-Server API §"Checks performed
// on receipt of a PDU", §"Transactions", §"Request Authentication"), each
// proved against a real daemon by a peer that forges what a hostile server
// would. Alice's /sync and /messages on hs1 are the judge: a forged event
// must never reach a client, and the room must go on working.

// peerScene is hs1 with alice's public room and mallory@peer.test in it.
type peerScene struct {
	hs1    *Daemon
	peer   *fedPeer
	alice  *mautrix.Client
	roomID id.RoomID
	since  string // alice's sync token, past everything judged so far
}

func startPeerScene(t *testing.T) *peerScene {
	t.Helper()
	peer, hs1 := startWithPeer(t, false)
	s := &peerScene{hs1: hs1, peer: peer, alice: hs1.Register("alice")}
	s.roomID = CreateRoom(t, s.alice, &mautrix.ReqCreateRoom{Name: "Forgeries", Preset: "public_chat"})
	s.since = Quiesce(t, s.alice, Sync(t, s.alice, "", "", 0).NextBatch)
	s.publicRoomWithMallory(t, s.roomID)
	return s
}

// publicRoomWithMallory joins mallory to one of alice's public rooms and
// waits until alice sees him there.
func (s *peerScene) publicRoomWithMallory(t *testing.T, roomID id.RoomID) {
	t.Helper()
	s.peer.join("mallory", string(roomID))
	waitMembership(t, s.alice, roomID, id.UserID(s.peer.mallory()), "mallory joined, as hs1 sees it", "join")
}

// judge has the peer send a good message and waits until alice sees it;
// every event alice's /sync showed on the way, and her whole /messages,
// are checked: none of the forged IDs or bodies may be among them. Transactions are handled in
// order, so the forgeries sent before were decided by then.
func (s *peerScene) judge(t *testing.T, what string, forged []string, forgedBodies ...string) {
	t.Helper()
	control := s.peer.message(string(s.roomID), "control after "+what)
	s.sendOK(t, s.roomID, control)
	// /sync may leave out the middle of a long gap; /messages does not.
	for api, evs := range map[string][]*event.Event{"/sync": s.syncUntilEvent(t, s.roomID, control.EventID()),
		"/messages": History(t, s.alice, s.roomID, "", 100)} {
		for _, ev := range evs {
			if slices.Contains(forged, string(ev.ID)) {
				t.Errorf("%s: forged event %s reached alice's %s: %s", what, ev.ID, api, ev.Content.VeryRaw)
			}
			for _, b := range forgedBodies {
				if strings.HasPrefix(body(ev), b) {
					t.Errorf("%s: forged body %q reached alice's %s (event %s)", what, b, api, ev.ID)
				}
			}
		}
	}
}

// sendOK sends good events and requires the daemon to take them all.
func (s *peerScene) sendOK(t *testing.T, roomID id.RoomID, pdus ...gomatrixserverlib.PDU) {
	t.Helper()
	code, res := s.peer.sendTxn(s.peer.txnID(), raws(pdus...)...)
	if code != http.StatusOK {
		t.Fatalf("/send of good events: HTTP %d", code)
	}
	for _, pdu := range pdus {
		if r, ok := res[pdu.EventID()]; !ok || r.Error != "" {
			t.Fatalf("/send: good event %s refused: %+v", pdu.EventID(), res)
		}
	}
	s.peer.accepted(string(roomID), pdus...)
}

// refused sends one forged event in its own transaction and requires a
// PDU error for it (or, for an event too broken to have an ID, no result
// at all).
func (s *peerScene) refused(t *testing.T, what string, raw json.RawMessage, eventID string) {
	t.Helper()
	code, res := s.peer.sendTxn(s.peer.txnID(), raw)
	if code != http.StatusOK {
		t.Errorf("%s: /send answered HTTP %d, want 200 with a PDU error", what, code)
		return
	}
	if r, ok := res[eventID]; ok && r.Error == "" {
		t.Errorf("%s: the daemon accepted the forged event %s", what, eventID)
	} else if ok {
		t.Logf("%s: refused as expected: %s", what, r.Error)
	} else {
		t.Logf("%s: refused as expected, before it had an event ID (no result)", what)
	}
}

// syncUntilEvent syncs alice from s.since until eventID appears in roomID
// and returns every timeline event seen on the way.
func (s *peerScene) syncUntilEvent(t *testing.T, roomID id.RoomID, eventID string) []*event.Event {
	t.Helper()
	var seen []*event.Event
	resp := SyncUntil(t, s.alice, s.since, "", "event "+eventID, func(r *mautrix.RespSync) bool {
		if jr := r.Rooms.Join[roomID]; jr != nil {
			seen = append(seen, jr.Timeline.Events...)
		}
		return TimelineHas(r, roomID, id.EventID(eventID))
	})
	s.since = resp.NextBatch
	return seen
}

// TestForgedEventsFromPeer: each kind of forged event mallory's server
// can send is refused (or, for tampered content, stored redacted) and
// never shows in alice's /sync or /messages, while mallory's honest
// events go through.
func TestForgedEventsFromPeer(t *testing.T) {
	t.Parallel()
	s := startPeerScene(t)
	room := string(s.roomID)
	p := s.peer
	var forged []string

	// Control: an honest message, and one rebuilt by reforge (so that
	// reforge's edits below are the only thing wrong with its output).
	good := p.message(room, "hello from mallory")
	s.sendOK(t, s.roomID, good)
	honest := p.reforge(gomatrixserverlib.RoomVersionV10, p.message(room, "reforged but honest").JSON(), func(map[string]any) {})
	code, res := p.sendTxn(p.txnID(), honest)
	if code != http.StatusOK || len(res) != 1 {
		t.Fatalf("/send of a reforged honest event: HTTP %d %+v", code, res)
	}
	for id, r := range res {
		if r.Error != "" {
			t.Fatalf("a reforged honest event was refused: %s", r.Error)
		}
		pdu, err := gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersionV10).NewEventFromUntrustedJSON(honest)
		noErr(t, err, "parse reforged event")
		if pdu.EventID() != id {
			t.Fatalf("reforged event ID %s, answer names %s", pdu.EventID(), id)
		}
		p.accepted(room, pdu)
	}
	for _, ev := range s.syncUntilEvent(t, s.roomID, good.EventID()) {
		if ev.ID == id.EventID(good.EventID()) && body(ev) != "hello from mallory" {
			t.Fatalf("alice sees mallory's message as %q", body(ev))
		}
	}

	// Signed with a key the peer does not publish.
	_, rogue, _ := ed25519.GenerateKey(nil)
	unknownKey := p.build(room, evSpec{Type: "m.room.message", Content: map[string]any{"msgtype": "m.text", "body": "forged: unpublished key"},
		KeyID: "ed25519:rogue", Key: rogue})
	s.refused(t, "unpublished key", unknownKey.JSON(), unknownKey.EventID())
	// Signed under the published key ID, with another key.
	wrongKey := p.build(room, evSpec{Type: "m.room.message", Content: map[string]any{"msgtype": "m.text", "body": "forged: wrong key"},
		KeyID: p.keyID, Key: rogue})
	s.refused(t, "wrong key", wrongKey.JSON(), wrongKey.EventID())
	forged = append(forged, unknownKey.EventID(), wrongKey.EventID())
	s.judge(t, "bad signatures", forged, "forged: unpublished key", "forged: wrong key")

	// Content changed after signing: the hash fails, the event is kept
	// redacted (§"Checks performed on receipt of a PDU" step 3), so alice
	// sees it without a body.
	tampered := p.message(room, "original body")
	raw := []byte(strings.Replace(string(tampered.JSON()), `"original body"`, `"tampered body"`, 1))
	code, res = p.sendTxn(p.txnID(), raw)
	if code != http.StatusOK {
		t.Fatalf("/send of a tampered event: HTTP %d", code)
	}
	if r, ok := res[tampered.EventID()]; !ok || r.Error != "" {
		t.Errorf("tampered event: want it stored redacted (no error under its ID %s), got %+v", tampered.EventID(), res)
	} else {
		p.accepted(room, tampered)
		for _, ev := range s.syncUntilEvent(t, s.roomID, tampered.EventID()) {
			if ev.ID == id.EventID(tampered.EventID()) && len(ev.Content.Raw) != 0 {
				t.Errorf("alice sees the tampered event with content %s, want it redacted", ev.Content.VeryRaw)
			}
		}
	}
	s.judge(t, "tampered content", nil, "tampered body", "original body")

	// Mallory (power 0) raising himself to 100: the auth rules refuse it.
	plBefore := powerLevels(t, s.alice, s.roomID)
	var pl map[string]any
	p.mu.Lock()
	noErr(t, json.Unmarshal(p.rooms[room].state["m.room.power_levels\x00"].Content(), &pl), "power levels content")
	p.mu.Unlock()
	users, _ := pl["users"].(map[string]any)
	users[p.mallory()] = 100
	empty := ""
	raise := p.build(room, evSpec{Type: "m.room.power_levels", StateKey: &empty, Content: pl})
	s.refused(t, "power level raise", raise.JSON(), raise.EventID())
	forged = append(forged, raise.EventID())
	s.judge(t, "power level raise", forged)
	if after := powerLevels(t, s.alice, s.roomID); after != plBefore {
		t.Errorf("power levels changed by mallory's forged event:\nbefore %s\nafter  %s", plBefore, after)
	}

	// Events claiming alice as sender, signed by the peer: a message, and
	// a membership change (the one event type a server may relay for
	// another server's user, so only the signature check stops it).
	asAlice := p.build(room, evSpec{Type: "m.room.message", Sender: string(s.alice.UserID),
		Content: map[string]any{"msgtype": "m.text", "body": "forged: alice's words"}})
	s.refused(t, "message as alice", asAlice.JSON(), asAlice.EventID())
	aliceKey := string(s.alice.UserID)
	aliceLeaves := p.build(room, evSpec{Type: "m.room.member", StateKey: &aliceKey, Sender: aliceKey,
		Content: map[string]any{"membership": "leave"}})
	s.refused(t, "alice's leave", aliceLeaves.JSON(), aliceLeaves.EventID())
	forged = append(forged, asAlice.EventID(), aliceLeaves.EventID())
	s.judge(t, "another server's sender", forged, "forged: alice's words")
	if m := memberships(t, s.alice, s.roomID)[s.alice.UserID]; m != "join" {
		t.Errorf("alice's membership is %q after a forged leave, want join", m)
	}

	// Depths outside [0, 2^53-1], properly hashed and signed.
	negative := p.build(room, evSpec{Type: "m.room.message", Depth: -5,
		Content: map[string]any{"msgtype": "m.text", "body": "forged: negative depth"}})
	s.refused(t, "negative depth", negative.JSON(), negative.EventID())
	huge := p.reforge(gomatrixserverlib.RoomVersionV10, p.message(room, "forged: huge depth").JSON(), func(m map[string]any) {
		m["depth"] = json.Number("9007199254740992")
	})
	hugeEv, err := gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersionV10).NewEventFromTrustedJSON(huge, false)
	noErr(t, err, "parse the huge-depth event")
	s.refused(t, "depth 2^53", huge, hugeEv.EventID())
	forged = append(forged, negative.EventID(), hugeEv.EventID())
	s.judge(t, "absurd depths", forged, "forged: negative depth", "forged: huge depth")

	// /messages agrees with /sync: the whole history has mallory's good
	// events and none of the forged ones.
	history := History(t, s.alice, s.roomID, "", 100)
	ids := map[id.EventID]*event.Event{}
	for _, ev := range history {
		ids[ev.ID] = ev
	}
	if ids[id.EventID(good.EventID())] == nil {
		t.Errorf("mallory's good message is missing from /messages")
	}
	for _, f := range forged {
		if ev := ids[id.EventID(f)]; ev != nil {
			t.Errorf("forged event %s is in /messages: %s", f, ev.Content.VeryRaw)
		}
	}
	for _, ev := range history {
		if strings.HasPrefix(body(ev), "forged:") || body(ev) == "tampered body" {
			t.Errorf("forged body %q is in /messages", body(ev))
		}
	}
}

// powerLevels is the room's m.room.power_levels content as alice reads it.
func powerLevels(t *testing.T, c *mautrix.Client, roomID id.RoomID) string {
	t.Helper()
	var pl json.RawMessage
	noErr(t, c.StateEvent(ctx(t), roomID, event.StatePowerLevels, "", &pl), "read power levels")
	return string(pl)
}
