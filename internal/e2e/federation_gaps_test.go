package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"maunium.net/go/mautrix"
)

// Gaps in the DAG the daemon must fill from a peer that answers, answers
// garbage or never answers.

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
