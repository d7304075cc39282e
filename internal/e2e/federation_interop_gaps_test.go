package e2e

import (
	"fmt"
	"slices"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"
)

// TestInteropGapFilledWithoutState: the strict peer pushes one event
// after five it withheld. The daemon asks for the gap with
// get_missing_events (earliest_events: what it has, the last shared
// event; latest_events: the pushed one), and since the answer fills the
// gap it fetches no state (/state, /state_ids), as Complement's
// TestGetMissingEventsGapFilling demands; alice sees the six in order.
func TestInteropGapFilledWithoutState(t *testing.T) {
	t.Parallel()
	s := startPeerScene(t)
	p := s.peer
	p.setStrict(true)
	room := string(s.roomID)
	lastShared := p.latest(room)
	evs := s.chain(t, 6, "gap")
	for _, ev := range evs[:5] {
		p.withhold(room, ev)
	}
	s.sendOK(t, s.roomID, evs[5])

	var got []string
	for _, ev := range s.syncUntilEvent(t, s.roomID, evs[5].EventID()) {
		if b := body(ev); len(b) > 4 && b[:4] == "gap " {
			got = append(got, b)
		}
	}
	var want []string
	for i := range 6 {
		want = append(want, fmt.Sprintf("gap #%d", i))
	}
	if !slices.Equal(got, want) {
		t.Errorf("alice's /sync has %q, want %q", got, want)
	}
	if n, m := p.called("state"), p.called("state_ids"); n != 0 || m != 0 {
		t.Errorf("the daemon fetched state (/state %d, /state_ids %d) although get_missing_events filled the gap", n, m)
	}
	reqs := p.requestsTo("/_matrix/federation/v1/get_missing_events/")
	if len(reqs) != 1 {
		t.Fatalf("%d get_missing_events requests, want 1", len(reqs))
	}
	body := gjson.ParseBytes(reqs[0].Raw)
	if e := body.Get("earliest_events").Array(); len(e) != 1 || e[0].String() != lastShared.EventID() {
		t.Errorf("earliest_events %s, want [%s] (the last shared event)", body.Get("earliest_events").Raw, lastShared.EventID())
	}
	if l := body.Get("latest_events").Array(); len(l) != 1 || l[0].String() != evs[5].EventID() {
		t.Errorf("latest_events %s, want [%s]", body.Get("latest_events").Raw, evs[5].EventID())
	}
}

// TestInteropRejectedAuthEventsReject: an event is rejected when one of
// its auth events is, even one the daemon first hears of while fetching
// an auth chain (Complement's
// TestInboundFederationRejectsEventsWithRejectedAuthEvents). The peer's
// mallory sends a power-levels change she may not make (R, rejected);
// O is a member event of hers citing R, never sent; X and Y cite O. For X
// the peer's /event_auth answers with the chain holding O; for Y it
// answers 404, but O is known (rejected) by then. O, X and Y all stay
// out of alice's reach; a plain message after them is accepted.
func TestInteropRejectedAuthEventsReject(t *testing.T) {
	t.Parallel()
	s := startPeerScene(t)
	p := s.peer
	p.setStrict(true)
	room := string(s.roomID)
	mallory := p.mallory()
	create, jr := p.stateEvent(room, "m.room.create", ""), p.stateEvent(room, "m.room.join_rules", "")
	pl, member := p.stateEvent(room, "m.room.power_levels", ""), p.stateEvent(room, "m.room.member", mallory)
	empty := ""
	r := p.build(room, evSpec{Type: "m.room.power_levels", StateKey: &empty, Content: map[string]any{"users": map[string]any{}}})
	s.refused(t, "a power-levels change mallory may not make", r.JSON(), r.EventID())

	o := p.build(room, evSpec{Type: "m.room.member", StateKey: &mallory, Content: map[string]any{"membership": "join", "test": 1},
		Auth: []string{create.EventID(), jr.EventID(), r.EventID(), member.EventID()}})
	auth := []string{create.EventID(), pl.EventID(), o.EventID()}
	x := p.build(room, evSpec{Type: "m.room.message", Auth: auth, Content: map[string]any{"msgtype": "m.text", "body": "X cites O"}})
	y := p.build(room, evSpec{Type: "m.room.message", Auth: auth, Prevs: []string{x.EventID()}, Depth: x.Depth() + 1,
		Content: map[string]any{"msgtype": "m.text", "body": "Y cites O"}})
	p.serveAuthChain(x.EventID(), create, jr, pl, member, r, o)
	s.refused(t, "X, whose auth event O cites the rejected R", x.JSON(), x.EventID())
	s.refused(t, "Y, the same with no auth chain served", y.JSON(), y.EventID())

	s.judge(t, "rejected auth events", []string{r.EventID(), o.EventID(), x.EventID(), y.EventID()}, "X cites O", "Y cites O")
	for _, eid := range []string{o.EventID(), x.EventID(), y.EventID()} {
		if _, err := s.alice.GetEvent(ctx(t), s.roomID, id.EventID(eid)); err == nil {
			t.Errorf("alice can read %s, which should be rejected", eid)
		}
	}
	if r := p.refusals(); len(r) != 0 {
		t.Errorf("the strict peer refused PDUs: %+v", r)
	}
}

// TestInteropMissingEventWithBadJSONIgnored: get_missing_events answers
// with an event a room version 6+ room cannot hold (a float in its
// content, signed and hashed as a version 5 event would be). The daemon
// drops it, so the event built on it stays out; a later event on that
// one makes it ask for the gap again from the same earliest event
// (Complement's TestOutboundFederationIgnoresMissingEventWithBadJSONForRoomVersion6).
func TestInteropMissingEventWithBadJSONIgnored(t *testing.T) {
	t.Parallel()
	s := startPeerScene(t)
	p := s.peer
	p.setStrict(true)
	room := string(s.roomID)
	lastShared := p.latest(room)
	version := lastShared.Version()

	plain := p.message(room, "bad (withheld)")
	raw := p.reforge(version, plain.JSON(), func(m map[string]any) {
		m["content"].(map[string]any)["bad_val"] = 1.1
	})
	bad, err := gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersionV5).NewEventFromUntrustedJSON(raw)
	noErr(t, err, "the bad event as version 5 reads it")
	if _, err := gomatrixserverlib.MustGetRoomVersion(version).NewEventFromUntrustedJSON(raw); err == nil {
		t.Fatalf("room version %s takes a float; the test needs one that does not", version)
	}
	p.withhold(room, bad)
	good := p.build(room, evSpec{Type: "m.room.message", Prevs: []string{bad.EventID()}, Depth: bad.Depth() + 1,
		Content: map[string]any{"msgtype": "m.text", "body": "good on bad"}})
	s.refused(t, "an event whose missing prev event has bad JSON", good.JSON(), good.EventID())

	third := p.build(room, evSpec{Type: "m.room.message", Prevs: []string{good.EventID()}, Depth: good.Depth() + 1,
		Content: map[string]any{"msgtype": "m.text", "body": "third on good"}})
	p.sendTxn(p.txnID(), third.JSON())
	reqs := p.requestsTo("/_matrix/federation/v1/get_missing_events/")
	if len(reqs) < 2 {
		t.Fatalf("%d get_missing_events requests, want one per event with a gap", len(reqs))
	}
	last := gjson.ParseBytes(reqs[len(reqs)-1].Raw)
	if e := last.Get("earliest_events").Array(); len(e) != 1 || e[0].String() != lastShared.EventID() {
		t.Errorf("earliest_events %s, want [%s]: the good event must not have been kept", last.Get("earliest_events").Raw, lastShared.EventID())
	}
	if l := last.Get("latest_events").Array(); len(l) != 1 || l[0].String() != third.EventID() {
		t.Errorf("latest_events %s, want [%s]", last.Get("latest_events").Raw, third.EventID())
	}
	s.judge(t, "bad JSON in a missing event", []string{bad.EventID(), good.EventID()}, "bad (withheld)", "good on bad")
}
