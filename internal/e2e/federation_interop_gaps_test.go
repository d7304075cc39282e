package e2e

import (
	"fmt"
	"slices"
	"testing"

	"github.com/tidwall/gjson"
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
