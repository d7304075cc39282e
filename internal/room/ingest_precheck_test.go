package room

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/hearth-chat/hearth/internal/store"
)

// TestIngestBatchUsesPrecheckOnlyForSameAuthEvents: check 4 run ahead
// (PrecheckAuth, beside a transaction's signature checks) decides an
// event in IngestBatch when the auth events the writer loads are the
// objects the precheck saw, and is ignored otherwise: a precheck over
// other copies of the auth events (an event cache entry since parsed
// again) saying "refused" does not keep out a message the auth rules
// allow.
func TestIngestBatchUsesPrecheckOnlyForSameAuthEvents(t *testing.T) {
	const bob2 = "@bob:hs2.test"
	e, _, build := remoteRoom(t, bob2)
	ctx := context.Background()
	var err error

	// The precheck's answer is the one used when its auth events are
	// the ones found: here one made up, to see that it is.
	msg := build(bob2, "hello")
	pre := e.PrecheckAuth(msg)
	if pre == nil || pre.err != nil {
		t.Fatalf("bob's message prechecked as %+v, want allowed", pre)
	}
	pre.err = errors.New("made-up refusal")
	res, _ := e.IngestBatch(ctx, []gomatrixserverlib.PDU{msg}, []*AuthPrecheck{pre}, nil)
	if res[0] == nil || !strings.Contains(res[0].Error(), "made-up refusal") {
		t.Fatalf("with a precheck over the same auth events: %v, want its answer", res[0])
	}

	// Over other copies of the same events it is not used: the writer
	// runs the check itself.
	msg2 := build(bob2, "hello again")
	pre2 := e.PrecheckAuth(msg2)
	if pre2 == nil || pre2.err != nil {
		t.Fatalf("bob's second message prechecked as %+v, want allowed", pre2)
	}
	copies := make([]gomatrixserverlib.PDU, len(pre2.auth))
	for i, a := range pre2.auth {
		if copies[i], err = gomatrixserverlib.MustGetRoomVersion(a.Version()).NewEventFromTrustedJSONWithEventID(a.EventID(), a.JSON(), a.Redacted()); err != nil {
			t.Fatal(err)
		}
	}
	res, _ = e.IngestBatch(ctx, []gomatrixserverlib.PDU{msg2}, []*AuthPrecheck{{auth: copies, err: errors.New("made-up refusal")}}, nil)
	if res[0] != nil {
		t.Fatalf("with a precheck over copies of the auth events: %v, want the writer's own answer (allowed)", res[0])
	}
}

// TestIngestStreamStoresEventsAsTheyAreChecked: the store's writer takes
// a transaction's events from next one at a time, in order, and may be
// asked for one before the next is ready (here: the third becomes ready
// only once the writer has taken the first); an event the caller's
// checks refused (nil) is skipped with no result. (That the writer
// stores event i before asking for i+1 is not observable from here.)
func TestIngestStreamStoresEventsAsTheyAreChecked(t *testing.T) {
	const bob2 = "@bob:hs2.test"
	e, roomID, build := remoteRoom(t, bob2)
	ctx := context.Background()
	msgs := []gomatrixserverlib.PDU{build(bob2, "first"), build(bob2, "second")}
	tookFirst := make(chan struct{})
	var once sync.Once
	next := func(i int) (gomatrixserverlib.PDU, *AuthPrecheck, bool) {
		switch i {
		case 0:
			once.Do(func() { close(tookFirst) })
			return msgs[0], nil, true
		case 1:
			return nil, nil, true // refused by the caller's checks
		default:
			<-tookFirst // "still being checked" until the writer took the first
			return msgs[1], nil, true
		}
	}
	res, done, _ := e.IngestStream(ctx, 3, next, nil)
	if done != 3 || len(res) != 3 {
		t.Fatalf("done %d, %d results, want 3", done, len(res))
	}
	for i, err := range res {
		if err != nil {
			t.Errorf("result %d: %v", i, err)
		}
	}
	for _, m := range msgs {
		if _, err := e.Event(alice, roomID, m.EventID()); err != nil {
			t.Errorf("%s not stored: %v", m.EventID(), err)
		}
	}
}

// TestIngestStreamStopsBeforeASlowCheck: an event whose check may wait
// on another server (next says not ok) is not waited for in the store's
// writer: the events before it are stored and committed, then does not
// run (the answer would be incomplete), and IngestStream says where it
// stopped.
func TestIngestStreamStopsBeforeASlowCheck(t *testing.T) {
	const bob2 = "@bob:hs2.test"
	e, roomID, build := remoteRoom(t, bob2)
	ctx := context.Background()
	msg := build(bob2, "first")
	ran := false
	res, done, committed := e.IngestStream(ctx, 3, func(i int) (gomatrixserverlib.PDU, *AuthPrecheck, bool) {
		if i == 0 {
			return msg, nil, true
		}
		if i == 2 {
			t.Errorf("the writer went past the event it was told not to wait for")
		}
		return nil, nil, false
	}, func(*store.Tx, []error) error { ran = true; return nil })
	if done != 1 || len(res) != 1 || res[0] != nil || committed || ran {
		t.Fatalf("done %d, results %v, committed %v, then ran %v; want 1, [nil], false, false", done, res, committed, ran)
	}
	if _, err := e.Event(alice, roomID, msg.EventID()); err != nil {
		t.Errorf("the event before the stop was not stored: %v", err)
	}
}

// TestAuthPrecheckerReadsWhatItLacks: one prechecker serves a
// transaction's events; an event citing an auth event none before it
// cited (another sender's membership) still gets its auth events read,
// and one citing an event this server lacks gets no precheck.
func TestAuthPrecheckerReadsWhatItLacks(t *testing.T) {
	const bob2, carol2 = "@bob:hs2.test", "@carol:hs2.test"
	e, _, build := remoteRoom(t, bob2, carol2)
	p := e.NewAuthPrechecker()
	for _, sender := range []string{bob2, carol2, bob2} {
		pre := p.Check(build(sender, "hi"))
		if pre == nil || pre.err != nil || len(pre.auth) != 3 {
			t.Fatalf("%s's message prechecked as %+v, want allowed over 3 auth events", sender, pre)
		}
	}
	// A message citing an auth event never stored here.
	msg := build(bob2, "hi")
	forged, err := gomatrixserverlib.MustGetRoomVersion(msg.Version()).NewEventFromTrustedJSON(
		[]byte(strings.Replace(string(msg.JSON()), `"auth_events":[`, `"auth_events":["$unknown",`, 1)), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(forged.AuthEventIDs()) != 4 {
		t.Fatalf("auth events %v", forged.AuthEventIDs())
	}
	if pre := p.Check(forged); pre != nil {
		t.Errorf("an event citing an unknown auth event prechecked as %+v, want none", pre)
	}
}

// remoteRoom makes a public room of alice's that the remote users joined,
// and returns a builder of their messages in it at its current state.
func remoteRoom(t *testing.T, remote ...string) (*Engine, string, func(sender, body string) gomatrixserverlib.PDU) {
	t.Helper()
	e, _ := newEngine(t)
	roomID, err := e.CreateRoom(context.Background(), alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range remote {
		remoteMember(t, e, roomID, u, u, "join")
	}
	return e, roomID, messageBuilder(t, e, roomID)
}

// messageBuilder builds messages of the room at its current state.
func messageBuilder(t *testing.T, e *Engine, roomID string) func(sender, body string) gomatrixserverlib.PDU {
	return func(sender, body string) gomatrixserverlib.PDU {
		t.Helper()
		var pdu gomatrixserverlib.PDU
		err := e.db.View(func(tx *store.Tx) error {
			info, err := roomInfo(tx, roomID)
			if err != nil {
				return err
			}
			pdu, err = e.build(tx, info, message(roomID, sender, body))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return pdu
	}
}

// TestAuthPrecheckerAsksOncePerQuestion: the prechecker keeps a "yes" of
// the default auth rule for a room, sender, event type and auth event
// objects, and only for those: after bob's messages are allowed (one
// question kept for both), an event of a type the power levels reserve
// for level 100, one of carol (not in the room) citing bob's auth
// events, and a state event of bob's of the same type (state_default
// 50), each over the same auth event objects, are still refused.
func TestAuthPrecheckerAsksOncePerQuestion(t *testing.T) {
	const bob2, carol2 = "@bob:hs2.test", "@carol:hs2.test"
	e, _ := newEngine(t)
	ctx := context.Background()
	roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat",
		PowerLevelContentOverride: json.RawMessage(`{"events":{"m.custom":100}}`)})
	if err != nil {
		t.Fatal(err)
	}
	remoteMember(t, e, roomID, bob2, bob2, "join")
	builder := messageBuilder(t, e, roomID)
	build := func(body string) gomatrixserverlib.PDU { return builder(bob2, body) }
	p := e.NewAuthPrechecker()
	for _, body := range []string{"one", "two"} {
		if pre := p.Check(build(body)); pre == nil || pre.err != nil {
			t.Fatalf("bob's message %q prechecked as %+v, want allowed", body, pre)
		}
	}
	if len(p.allowed) != 1 {
		t.Fatalf("%d questions kept for two messages of one sender and type, want 1", len(p.allowed))
	}
	msg := build("three")
	edit := func(from, to string) gomatrixserverlib.PDU {
		t.Helper()
		pdu, err := gomatrixserverlib.MustGetRoomVersion(msg.Version()).NewEventFromTrustedJSON(
			[]byte(strings.Replace(string(msg.JSON()), from, to, 1)), false)
		if err != nil {
			t.Fatal(err)
		}
		return pdu
	}
	for name, pdu := range map[string]gomatrixserverlib.PDU{
		"a type reserved for level 100":      edit(`"type":"m.room.message"`, `"type":"m.custom"`),
		"carol's message over bob's members": edit(`"sender":"`+bob2+`"`, `"sender":"`+carol2+`"`),
		"a state event of the same type":     edit(`"type":"m.room.message"`, `"state_key":"","type":"m.room.message"`),
	} {
		pre := p.Check(pdu)
		if pre == nil || pre.err == nil {
			t.Errorf("%s prechecked as %+v, want refused", name, pre)
		}
		if want := e.allowedBy(pdu, pre.auth); want == nil {
			t.Errorf("%s: gomatrixserverlib allows it: the test does not test the cache", name)
		}
	}
}
