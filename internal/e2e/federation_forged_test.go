package e2e

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
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
	net := newFedNet(t, "hs1.test")
	peer := net.addPeer(peerName, "hs1.test")
	hs1 := net.Daemons["hs1.test"]
	hs1.Start()
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
	mallory := id.UserID(s.peer.mallory())
	waitFor(t, "mallory joined, as hs1 sees it", func() (string, bool) {
		m := memberships(t, s.alice, roomID)[mallory]
		return m, m == "join"
	})
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

// TestForgedTransactionsFromPeer: a transaction over the spec's 50
// PDUs gets 400 and stores none of them (50 go through); a replayed
// transaction ID gets the first answer again and adds nothing; a
// transaction claiming another origin than its signer is refused.
func TestForgedTransactionsFromPeer(t *testing.T) {
	t.Parallel()
	s := startPeerScene(t)
	room := string(s.roomID)
	p := s.peer
	sendPath := "/_matrix/federation/v1/send/"
	txnOf := func(origin string, pdus ...gomatrixserverlib.PDU) gomatrixserverlib.Transaction {
		return gomatrixserverlib.Transaction{Origin: spec.ServerName(origin), OriginServerTS: spec.AsTimestamp(time.Now()), PDUs: raws(pdus...)}
	}

	// The transaction's origin must be its signer.
	otherOrigin := p.message(room, "forged: another origin")
	code, answer := p.do("PUT", p.hs, sendPath+p.txnID(), txnOf("hs2.test", otherOrigin), true)
	if code != http.StatusForbidden {
		t.Errorf("/send whose origin is not its signer: HTTP %d %s, want 403", code, answer)
	}
	s.judge(t, "another origin", []string{otherOrigin.EventID()}, "forged: another origin")

	// 51 PDUs: 400 and nothing stored. Each event builds on the one
	// before, so the count is the only thing wrong.
	many := s.chain(t, 51, "forged: one of 51")
	code, answer = p.do("PUT", p.hs, sendPath+p.txnID(), txnOf(peerName, many...), true)
	if code != http.StatusBadRequest {
		t.Errorf("/send of 51 PDUs: HTTP %d %s, want 400", code, answer)
	}
	var manyIDs []string
	for _, pdu := range many {
		manyIDs = append(manyIDs, pdu.EventID())
	}
	s.judge(t, "51 PDUs", manyIDs, "forged: one of 51")
	fifty := s.chain(t, 50, "one of 50")
	s.sendOK(t, s.roomID, fifty...)
	s.syncUntilEvent(t, s.roomID, fifty[49].EventID())

	// Replay: the same transaction ID again, same body and then another
	// body, gets the first answer and changes nothing.
	first := p.message(room, "sent once")
	txn := p.txnID()
	code, res1 := p.sendTxn(txn, first.JSON())
	if code != http.StatusOK || res1[first.EventID()].Error != "" {
		t.Fatalf("first /send %s: HTTP %d %+v", txn, code, res1)
	}
	p.accepted(room, first)
	code, res2 := p.sendTxn(txn, first.JSON())
	if code != http.StatusOK || !sameResults(res1, res2) {
		t.Errorf("replayed /send %s: HTTP %d %+v, want the first answer %+v", txn, code, res2, res1)
	}
	swapped := p.message(room, "forged: replayed transaction ID")
	code, res3 := p.sendTxn(txn, swapped.JSON())
	if code != http.StatusOK || !sameResults(res1, res3) {
		t.Errorf("/send %s again with another event: HTTP %d %+v, want the first answer %+v", txn, code, res3, res1)
	}
	s.judge(t, "replayed transaction", []string{swapped.EventID()}, "forged: replayed transaction ID")
	n := 0
	for _, ev := range History(t, s.alice, s.roomID, "", 100) {
		if body(ev) == "sent once" {
			n++
		}
		if strings.HasPrefix(body(ev), "forged:") {
			t.Errorf("forged body %q is in /messages", body(ev))
		}
	}
	if n != 1 {
		t.Errorf("a replayed transaction's message is in /messages %d times, want once", n)
	}
}

// chain builds n messages, each on the one before, starting at the
// peer's latest event; the peer's view is left as it was.
func (s *peerScene) chain(t *testing.T, n int, label string) []gomatrixserverlib.PDU {
	t.Helper()
	var out []gomatrixserverlib.PDU
	var prev gomatrixserverlib.PDU
	for i := range n {
		es := evSpec{Type: "m.room.message", Content: map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("%s #%d", label, i)}}
		if prev != nil {
			es.Prevs, es.Depth = []string{prev.EventID()}, prev.Depth()+1
		}
		prev = s.peer.build(string(s.roomID), es)
		out = append(out, prev)
	}
	return out
}

func sameResults(a, b map[string]fclient.PDUResult) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestForgedRequestAuthFromPeer: a /send without an X-Matrix signature,
// or signed for another destination, gets 401 M_UNAUTHORIZED
// (Server-Server API §"Request Authentication": "If the destination does
// not match ... the receiving server must deny the request with 401")
// and stores nothing.
func TestForgedRequestAuthFromPeer(t *testing.T) {
	t.Parallel()
	s := startPeerScene(t)
	room := string(s.roomID)
	p := s.peer
	var wrong []string
	for _, c := range []struct {
		what, destination string
		signed            bool
	}{
		{"forged: unsigned request", "hs1.test", false},
		{"forged: signed for hs2.test", "hs2.test", true},
	} {
		ev := p.message(room, c.what)
		txn := gomatrixserverlib.Transaction{Origin: peerName, OriginServerTS: spec.AsTimestamp(time.Now()), PDUs: raws(ev)}
		code, answer := p.do("PUT", spec.ServerName(c.destination), "/_matrix/federation/v1/send/"+p.txnID(), txn, c.signed)
		if code/100 == 2 {
			t.Fatalf("%s: HTTP %d %s, want 401 M_UNAUTHORIZED", c.what, code, answer)
		}
		if code != http.StatusUnauthorized || errcode(answer) != "M_UNAUTHORIZED" {
			wrong = append(wrong, fmt.Sprintf("%s: HTTP %d %s", c.what, code, strings.TrimSpace(string(answer))))
		}
		s.judge(t, c.what, []string{ev.EventID()}, c.what)
	}
	if len(wrong) > 0 {
		t.Fatalf("refused, but not as the spec says: want 401 M_UNAUTHORIZED, got:\n%s", strings.Join(wrong, "\n"))
	}
}

// gap builds two messages, a withheld one and one after it, so that the
// daemon receives an event whose prev event it does not know; the peer
// answers get_missing_events with the withheld one when its answers are
// real.
func (s *peerScene) gap(t *testing.T, label string) (withheld, pushed gomatrixserverlib.PDU) {
	t.Helper()
	room := string(s.roomID)
	withheld = s.peer.message(room, label+" (withheld)")
	pushed = s.peer.build(room, evSpec{Type: "m.room.message", Prevs: []string{withheld.EventID()}, Depth: withheld.Depth() + 1,
		Content: map[string]any{"msgtype": "m.text", "body": label + " (pushed)"}})
	s.peer.withhold(room, withheld)
	return withheld, pushed
}

// TestPeerGapAnsweredOrGarbage: an event whose prev event the daemon
// lacks makes it ask the peer (get_missing_events). Answered really, both
// events arrive (the control); answered with garbage, the event is
// refused, neither reaches alice, and the room goes on.
func TestPeerGapAnsweredOrGarbage(t *testing.T) {
	t.Parallel()
	s := startPeerScene(t)
	room := string(s.roomID)
	p := s.peer

	a, b := s.gap(t, "filled gap")
	s.sendOK(t, s.roomID, b)
	p.accepted(room, a, b)
	if p.called("get_missing_events") == 0 {
		t.Fatal("the daemon took an event after a gap without asking for the gap")
	}
	var bodies []string
	for _, ev := range s.syncUntilEvent(t, s.roomID, b.EventID()) {
		bodies = append(bodies, body(ev))
	}
	if !slices.Contains(bodies, "filled gap (withheld)") {
		t.Errorf("alice's /sync has %q, want the fetched event too", bodies)
	}

	p.setAnswer(answerGarbage)
	before := p.called("get_missing_events")
	a, b = s.gap(t, "forged: garbage gap")
	code, res := p.sendTxn(p.txnID(), b.JSON())
	if code != http.StatusOK {
		t.Fatalf("/send after a gap answered with garbage: HTTP %d", code)
	}
	if r, ok := res[b.EventID()]; !ok || r.Error == "" {
		t.Errorf("an event after a gap the peer answered with garbage was accepted: %+v", res)
	}
	if p.called("get_missing_events") == before {
		t.Errorf("the daemon did not ask for the gap")
	}
	// An event citing an auth event the daemon lacks: it asks for the
	// auth chain (event_auth) and gets garbage.
	mallory := p.mallory()
	auth := []string{p.stateEvent(room, "m.room.create", "").EventID(), p.stateEvent(room, "m.room.power_levels", "").EventID(),
		p.stateEvent(room, "m.room.member", mallory).EventID(), "$uR2kqRIb8qUfJ7-JhTOpI6Bb3k7Z2gTHbGV3nqaYkyQ"}
	unknownAuth := p.build(room, evSpec{Type: "m.room.message", Auth: auth,
		Content: map[string]any{"msgtype": "m.text", "body": "forged: unknown auth event"}})
	before = p.called("event_auth")
	s.refused(t, "unknown auth event, garbage auth chain", unknownAuth.JSON(), unknownAuth.EventID())
	if p.called("event_auth") == before {
		t.Errorf("the daemon did not ask for the missing auth events")
	}
	t.Logf("callbacks made: get_missing_events %d, state %d, event %d, event_auth %d",
		p.called("get_missing_events"), p.called("state"), p.called("event"), p.called("event_auth"))
	p.setAnswer(answerReal)
	s.judge(t, "garbage gap", []string{a.EventID(), b.EventID(), unknownAuth.EventID()}, "forged: garbage gap", "forged: unknown auth event")
}

// TestPeerHangsDuringGap: the peer never answers the daemon's questions
// about a gap. The /send waits on it, within the daemon's bounds; other
// rooms (a local one, and another one shared with the peer) and even the
// same room keep working meanwhile; the event is refused in the end and
// the room goes on.
func TestPeerHangsDuringGap(t *testing.T) {
	t.Parallel()
	s := startPeerScene(t)
	p := s.peer
	other := CreateRoom(t, s.alice, &mautrix.ReqCreateRoom{Name: "Elsewhere", Preset: "public_chat"})
	s.publicRoomWithMallory(t, other)
	local := CreateRoom(t, s.alice, &mautrix.ReqCreateRoom{Name: "Alone", Preset: "private_chat"})
	s.since = Quiesce(t, s.alice, s.since)

	p.setAnswer(answerHang)
	a, b := s.gap(t, "forged: hanging gap")
	type sent struct {
		code int
		res  map[string]fclient.PDUResult
		err  error
	}
	done := make(chan sent, 1)
	go func() {
		code, res, err := p.trySend(p.txnID(), b.JSON())
		done <- sent{code, res, err}
	}()
	waitFor(t, "the daemon asks the peer about the gap", func() (int, bool) {
		n := p.called("get_missing_events")
		return n, n > 0
	})

	// While the daemon waits on the peer: alice in a room of her own...
	mine := SendText(t, s.alice, local, "alone, while the peer hangs")
	s.syncUntilEvent(t, local, string(mine))
	// ... in the room the waiting event is for ...
	same := SendText(t, s.alice, s.roomID, "here, while the peer hangs")
	s.syncUntilEvent(t, s.roomID, string(same))
	// ... and the peer itself, in another room.
	elsewhere := p.message(string(other), "meanwhile, elsewhere")
	s.sendOK(t, other, elsewhere)
	s.syncUntilEvent(t, other, elsewhere.EventID())
	select {
	case r := <-done:
		t.Logf("the /send returned before the checks meanwhile were done: HTTP %d %+v %v", r.code, r.res, r.err)
		done <- r
	default:
	}

	// The waiting /send ends within the daemon's bounds (the peer's
	// client gives up after 3 minutes, which fails here).
	r := <-done
	if r.err != nil {
		t.Fatalf("/send while the peer hangs did not return: %v", r.err)
	}
	if r.code != http.StatusOK {
		t.Errorf("/send while the peer hangs: HTTP %d, want 200 with a PDU error", r.code)
	}
	if res, ok := r.res[b.EventID()]; !ok || res.Error == "" {
		t.Errorf("an event after a gap the peer never answered was accepted: %+v", r.res)
	}
	t.Logf("callbacks made: get_missing_events %d, state %d, event %d, event_auth %d",
		p.called("get_missing_events"), p.called("state"), p.called("event"), p.called("event_auth"))
	p.setAnswer(answerReal)
	s.judge(t, "hanging gap", []string{a.EventID(), b.EventID()}, "forged: hanging gap")
}

// TestPeerHangsOnManyGaps: a transaction of several events, each after
// its own gap, from a peer that never answers. The daemon's bound on the
// whole /send must not grow with the number of PDUs (up to 50 per
// transaction): here 6 of them must be done within 100 s, well above the
// bound of one gap (fetchTimeout, 20 s) and well below six of them.
func TestPeerHangsOnManyGaps(t *testing.T) {
	t.Parallel()
	s := startPeerScene(t)
	p := s.peer
	p.setAnswer(answerHang)
	var pdus []json.RawMessage
	var ids []string
	for i := range 6 {
		a, b := s.gap(t, fmt.Sprintf("forged: gap %d", i))
		pdus = append(pdus, b.JSON())
		ids = append(ids, a.EventID(), b.EventID())
	}
	c, cancel := context.WithTimeout(t.Context(), 100*time.Second)
	defer cancel()
	code, res, err := p.trySendCtx(c, p.txnID(), pdus...)
	if err != nil {
		t.Fatalf("/send of 6 events after gaps while the peer hangs did not return within 100 s: %v", err)
	}
	if code != http.StatusOK {
		t.Errorf("/send: HTTP %d, want 200 with PDU errors", code)
	}
	for id, r := range res {
		if r.Error == "" {
			t.Errorf("event %s after a gap nobody answered was accepted", id)
		}
	}
	p.setAnswer(answerReal)
	s.judge(t, "many hanging gaps", ids, "forged: gap")
}

// crossRooms is a scene with a second room, where alice made mallory an
// admin; the first room has a topic the second has not, to see it leak.
type crossRooms struct {
	*peerScene
	other   id.RoomID
	otherPL gomatrixserverlib.PDU // the power levels naming mallory
	before  map[id.RoomID]map[string]string
}

func startCrossRooms(t *testing.T) *crossRooms {
	t.Helper()
	s := startPeerScene(t)
	p := s.peer
	_, err := s.alice.SendStateEvent(ctx(t), s.roomID, event.StateTopic, "", map[string]any{"topic": "only in the first room"})
	noErr(t, err, "alice sets a topic")
	c := &crossRooms{peerScene: s}
	c.other = CreateRoom(t, s.alice, &mautrix.ReqCreateRoom{Name: "Mallory's kingdom", Preset: "public_chat"})
	s.publicRoomWithMallory(t, c.other)
	var pl map[string]any
	noErr(t, s.alice.StateEvent(ctx(t), c.other, event.StatePowerLevels, "", &pl), "read power levels")
	pl["users"].(map[string]any)[p.mallory()] = 100
	_, err = s.alice.SendStateEvent(ctx(t), c.other, event.StatePowerLevels, "", pl)
	noErr(t, err, "alice makes mallory admin of the other room")
	c.otherPL = waitFor(t, "the peer sees mallory's power in the other room", func() (gomatrixserverlib.PDU, bool) {
		ev := p.stateEvent(string(c.other), "m.room.power_levels", "")
		return ev, ev != nil && strings.Contains(string(ev.Content()), p.mallory())
	})
	waitFor(t, "the peer sees the topic", func() (bool, bool) {
		ok := p.stateEvent(string(s.roomID), "m.room.topic", "") != nil
		return ok, ok
	})
	c.before = map[id.RoomID]map[string]string{s.roomID: stateIDs(t, s.alice, s.roomID), c.other: stateIDs(t, s.alice, c.other)}
	return c
}

// unchanged has alice send to both rooms (her events build on each
// room's heads, merging whatever the daemon took) and checks that no
// forged event is in either room's /messages and that neither room's
// state changed.
func (c *crossRooms) unchanged(t *testing.T, forged []string) {
	t.Helper()
	for _, r := range []id.RoomID{c.roomID, c.other} {
		if _, err := c.alice.SendText(ctx(t), r, "alice, after the cross-room forgeries"); err != nil {
			t.Errorf("alice cannot send in %s after cross-room events: %v", r, err)
		}
		for _, ev := range History(t, c.alice, r, "", 100) {
			if slices.Contains(forged, string(ev.ID)) || strings.HasPrefix(body(ev), "forged:") {
				t.Errorf("a cross-room event is in /messages of %s: %s %s", r, ev.ID, ev.Content.VeryRaw)
			}
		}
		after := stateIDs(t, c.alice, r)
		for k, v := range c.before[r] {
			if after[k] != v {
				t.Errorf("state %s of %s changed by cross-room events: %s, was %s", k, r, after[k], v)
			}
		}
		for k, v := range after {
			if _, ok := c.before[r][k]; !ok {
				t.Errorf("state %s of %s appeared with cross-room events: %s", k, r, v)
			}
		}
	}
}

// TestForgedEventsAcrossRooms: events of one room that name an event of
// another room (one where mallory has power 100) as their prev event or
// as an auth event are refused, and each room's state stays its own.
func TestForgedEventsAcrossRooms(t *testing.T) {
	t.Parallel()
	c := startCrossRooms(t)
	p := c.peer
	room := string(c.roomID)
	var forged []string
	for _, r := range []struct{ in, from string }{{room, string(c.other)}, {string(c.other), room}} {
		cross := p.latest(r.from)
		viaPrev := p.build(r.in, evSpec{Type: "m.room.message", Prevs: []string{cross.EventID()}, Depth: cross.Depth() + 1,
			Content: map[string]any{"msgtype": "m.text", "body": "forged: prev in another room"}})
		c.refused(t, "prev event in another room", viaPrev.JSON(), viaPrev.EventID())
		forged = append(forged, viaPrev.EventID())
	}
	// A power levels change authorised by the other room's power levels.
	var mine map[string]any
	noErr(t, json.Unmarshal(p.stateEvent(room, "m.room.power_levels", "").Content(), &mine), "power levels content")
	mine["users"].(map[string]any)[p.mallory()] = 100
	empty := ""
	auth := []string{p.stateEvent(room, "m.room.create", "").EventID(), c.otherPL.EventID(),
		p.stateEvent(room, "m.room.member", p.mallory()).EventID()}
	viaAuth := p.build(room, evSpec{Type: "m.room.power_levels", StateKey: &empty, Content: mine, Auth: auth})
	c.refused(t, "auth event in another room", viaAuth.JSON(), viaAuth.EventID())
	forged = append(forged, viaAuth.EventID())
	c.unchanged(t, forged)
}

// TestForgedPrevsInTwoRooms: an event whose prev events are the heads of
// its own room and of another room (the state before it would merge the
// two rooms' states) is refused, whichever of the two rooms it claims.
func TestForgedPrevsInTwoRooms(t *testing.T) {
	t.Parallel()
	c := startCrossRooms(t)
	p := c.peer
	room := string(c.roomID)
	var forged []string
	for _, r := range []struct{ in, from string }{{room, string(c.other)}, {string(c.other), room}} {
		own, cross := p.latest(r.in), p.latest(r.from)
		viaBoth := p.build(r.in, evSpec{Type: "m.room.message", Prevs: []string{own.EventID(), cross.EventID()},
			Depth: max(own.Depth(), cross.Depth()) + 1, Content: map[string]any{"msgtype": "m.text", "body": "forged: prevs in two rooms"}})
		c.refused(t, "prev events in two rooms", viaBoth.JSON(), viaBoth.EventID())
		forged = append(forged, viaBoth.EventID())
	}
	c.unchanged(t, forged)
}

// stateIDs is the room's current state as alice reads it: type and
// state key → event ID.
func stateIDs(t *testing.T, c *mautrix.Client, roomID id.RoomID) map[string]string {
	t.Helper()
	state, err := c.State(ctx(t), roomID)
	noErr(t, err, "read the state of %s", roomID)
	out := map[string]string{}
	for typ, byKey := range state {
		for sk, ev := range byKey {
			out[typ.Type+"|"+sk] = string(ev.ID)
		}
	}
	return out
}

// TestForgedAfterBanFromPeer: once alice bans mallory, his server may
// still send events that claim to come from before the ban (prev and
// auth events from then): they pass the checks against their own past
// but fail against the current state, so they are soft-failed
// (§"Soft failure") and never shown; one built on the present is
// rejected outright.
func TestForgedAfterBanFromPeer(t *testing.T) {
	t.Parallel()
	s := startPeerScene(t)
	p := s.peer
	room := string(s.roomID)
	mallory := id.UserID(p.mallory())
	preLatest := p.latest(room)
	preAuth := []string{p.stateEvent(room, "m.room.create", "").EventID(), p.stateEvent(room, "m.room.power_levels", "").EventID(),
		p.stateEvent(room, "m.room.member", string(mallory)).EventID()}

	_, err := s.alice.BanUser(ctx(t), s.roomID, &mautrix.ReqBanUser{UserID: mallory, Reason: "forgeries"})
	noErr(t, err, "alice bans mallory")
	waitFor(t, "mallory banned", func() (string, bool) {
		m := memberships(t, s.alice, s.roomID)[mallory]
		return m, m == "ban"
	})

	backdated := p.build(room, evSpec{Type: "m.room.message", Prevs: []string{preLatest.EventID()}, Depth: preLatest.Depth() + 1,
		Auth: preAuth, Content: map[string]any{"msgtype": "m.text", "body": "forged: backdated past the ban"}})
	code, res := p.sendTxn(p.txnID(), backdated.JSON())
	if code != http.StatusOK {
		t.Fatalf("/send of a backdated event: HTTP %d", code)
	}
	t.Logf("backdated event: %+v", res)
	// A backdated membership change: mallory "joins" again (a profile
	// change, by the state before it).
	self := string(mallory)
	rejoin := p.build(room, evSpec{Type: "m.room.member", StateKey: &self, Prevs: []string{preLatest.EventID()}, Depth: preLatest.Depth() + 1,
		Auth: preAuth, Content: map[string]any{"membership": "join", "displayname": "forged: unbanned"}})
	code, res = p.sendTxn(p.txnID(), rejoin.JSON())
	if code != http.StatusOK {
		t.Fatalf("/send of a backdated join: HTTP %d", code)
	}
	t.Logf("backdated join: %+v", res)
	present := p.message(room, "forged: banned but talking")
	s.refused(t, "message after the ban", present.JSON(), present.EventID())

	// Alice's own message is the control here: mallory can send nothing.
	control := SendText(t, s.alice, s.roomID, "alice, after the ban")
	forged := []string{backdated.EventID(), rejoin.EventID(), present.EventID()}
	for _, ev := range s.syncUntilEvent(t, s.roomID, string(control)) {
		if slices.Contains(forged, string(ev.ID)) || strings.HasPrefix(body(ev), "forged:") {
			t.Errorf("an event of banned mallory reached alice's /sync: %s %s", ev.ID, ev.Content.VeryRaw)
		}
	}
	for _, ev := range History(t, s.alice, s.roomID, "", 100) {
		if slices.Contains(forged, string(ev.ID)) || strings.HasPrefix(body(ev), "forged:") {
			t.Errorf("an event of banned mallory is in /messages: %s %s", ev.ID, ev.Content.VeryRaw)
		}
	}
	if m := memberships(t, s.alice, s.roomID)[mallory]; m != "ban" {
		t.Errorf("mallory's membership is %q after his backdated events, want ban", m)
	}
}
