package e2e

import (
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

// Forged events that reach into another room, or past a ban.

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
	waitMembership(t, s.alice, s.roomID, mallory, "mallory banned", "ban")

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
	// "The present" is the peer's view with the ban in it: wait for hs1's
	// outbound queue to deliver it (alice seeing it is not enough; a
	// message built before it arrives is backdated too, and soft-failed).
	waitFor(t, "the peer to receive the ban", func() (string, bool) {
		m := p.stateEvent(room, "m.room.member", string(mallory))
		b := ""
		if m != nil {
			b = string(m.Content())
		}
		return b, strings.Contains(b, `"ban"`)
	})
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
