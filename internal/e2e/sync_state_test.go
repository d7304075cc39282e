package e2e

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// offeredEvent is an event the peer serves on /event, with the state
// before it served on /state.
type offeredEvent struct {
	pdu   gomatrixserverlib.PDU
	state []gomatrixserverlib.PDU
}

// offerStateAt makes the peer answer /event for pdu and /state at it with
// the peer's current copy of the room's state (the state before pdu, when
// pdu builds on the peer's latest event).
func (p *fedPeer) offerStateAt(roomID string, pdu gomatrixserverlib.PDU) {
	p.mu.Lock()
	defer p.mu.Unlock()
	o := offeredEvent{pdu: pdu}
	for _, s := range p.rooms[roomID].state {
		o.state = append(o.state, s)
	}
	p.offered[pdu.EventID()] = o
}

// serveState is GET /state/{roomID}?event_id= for an offered event.
func (p *fedPeer) serveState(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	o, ok := p.offered[r.URL.Query().Get("event_id")]
	p.mu.Unlock()
	if !ok {
		notFound(w, r)
		return
	}
	res := fclient.RespState{StateEvents: gomatrixserverlib.NewEventJSONsFromEvents(o.state),
		AuthEvents: gomatrixserverlib.NewEventJSONsFromEvents(o.state)}
	writePeerJSON(w, http.StatusOK, res)
}

// serveEvent is GET /event/{eventID} for an offered event.
func (p *fedPeer) serveEvent(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	o, ok := p.offered[r.PathValue("eventID")]
	p.mu.Unlock()
	if !ok {
		notFound(w, r)
		return
	}
	txn := gomatrixserverlib.Transaction{Origin: p.Name, OriginServerTS: spec.AsTimestamp(time.Now()),
		PDUs: []json.RawMessage{o.pdu.JSON()}}
	writePeerJSON(w, http.StatusOK, txn)
}

// TestSyncStateLearnedWithoutItsEvent: mallory@peer renames himself in an
// event hs1 never receives (W), then sends a message after it (P). hs1
// cannot get W through get_missing_events, so it takes the state at W
// from /state and resolves it with its own: mallory's new name becomes
// the room's current state with no timeline event carrying it. Alice's
// incremental /sync must report it in the state section, and an initial
// one must hold the new name, not the old (Client-Server API §"Syncing").
func TestSyncStateLearnedWithoutItsEvent(t *testing.T) {
	t.Parallel()
	s := startPeerScene(t)
	s.since = Quiesce(t, s.alice, s.since)
	mallory := s.peer.mallory()

	pm := s.renameAtGap(t, "Mallory Renamed")

	renamed := func(evs []*event.Event) bool {
		for _, ev := range evs {
			if ev.Type == event.StateMember && ev.GetStateKey() == mallory && ev.Content.Raw["displayname"] == "Mallory Renamed" {
				return true
			}
		}
		return false
	}
	var inState, inTimeline bool
	SyncUntil(t, s.alice, s.since, "", "mallory's message", func(r *mautrix.RespSync) bool {
		if jr := r.Rooms.Join[s.roomID]; jr != nil {
			inState = inState || renamed(jr.State.Events)
			inTimeline = inTimeline || renamed(jr.Timeline.Events)
		}
		return TimelineHas(r, s.roomID, id.EventID(pm.EventID()))
	})
	if inTimeline {
		t.Errorf("the rename hs1 never received as an event is in alice's timeline")
	}
	if !inState {
		t.Errorf("alice's incremental sync does not report mallory's new name, which is the room's state now")
	}
	full := Sync(t, s.alice, "", "", 0)
	if jr := full.Rooms.Join[s.roomID]; jr == nil || !renamed(jr.State.Events) {
		t.Errorf("alice's initial sync does not hold mallory's new name")
	}
}

// renameAtGap has mallory@peer rename himself to name in an event (W) hs1
// never receives, then send a message (P) after it: hs1 cannot get W
// through get_missing_events and takes the state at W from /state. It
// returns P once hs1 accepted it.
func (s *peerScene) renameAtGap(t *testing.T, name string) gomatrixserverlib.PDU {
	t.Helper()
	p, room := s.peer, string(s.roomID)
	mallory := p.mallory()
	w := p.build(room, evSpec{Type: "m.room.member", StateKey: &mallory,
		Content: map[string]any{"membership": "join", "displayname": name}})
	p.offerStateAt(room, w)
	pm := p.build(room, evSpec{Type: "m.room.message", Prevs: []string{w.EventID()}, Depth: w.Depth() + 1,
		Content: map[string]any{"msgtype": "m.text", "body": "after my rename"}})
	s.sendOK(t, s.roomID, pm)
	if p.called("state") == 0 {
		t.Fatal("hs1 did not take the state at the gap from /state; the test does not test what it means to")
	}
	return pm
}
