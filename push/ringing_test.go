package push

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/internal/room"
)

// call is an m.call.invite's (or answer's, hangup's, reject's)
// content as a VoIP v1 client sends it.
func call(callID string, lifetime int64) map[string]any {
	c := map[string]any{"call_id": callID, "version": "1", "party_id": "DEVICE"}
	if lifetime != 0 {
		c["lifetime"] = lifetime
		c["offer"] = map[string]any{"type": "offer", "sdp": "v=0\r\n"}
	}
	return c
}

func (e *env) sendCall(tb testing.TB, sender, roomID, typ, txn string, content map[string]any) {
	tb.Helper()
	b, _ := json.Marshal(content)
	if _, err := e.rooms.Send(context.Background(), room.SendRequest{Sender: sender, Device: "D", RoomID: roomID,
		Type: typ, Content: b, TxnID: txn}); err != nil {
		tb.Fatal(err)
	}
}

// TestRingingFollowsCalls: on a real room engine and evaluator, an
// m.call.invite to the owner rings (listed for the tray, one desktop
// notification "Anna is calling") until the caller hangs up, the owner
// answers or rejects, or its lifetime passes; the owner's own invite and
// one whose lifetime passed before we saw it ring nowhere.
func TestRingingFollowsCalls(t *testing.T) {
	e := openEnv(t, t.TempDir())
	defer e.db.Close()
	owner, anna := user("owner"), user("anna")
	ctx := context.Background()
	roomID, err := e.rooms.CreateRoom(ctx, anna, room.Profile{DisplayName: "Anna"}, room.CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.rooms.ChangeMembership(ctx, room.MembershipRequest{Sender: owner, Target: owner, RoomID: roomID, Membership: "join"}); err != nil {
		t.Fatal(err)
	}
	s := New(e.db, e.rooms, Options{})
	var skew atomic.Int64 // our clock ahead of the senders', in ms
	s.now = func() time.Time { return time.Now().Add(time.Duration(skew.Load()) * time.Millisecond) }
	desk := make(recordingDesktop, 16)
	s.SetDesktop(desk, DesktopOptions{Owner: func(u string) bool { return u == owner },
		Active: func(string) bool { return false }, Mode: func() string { return "on" }})
	s.Start()
	defer s.Stop()
	// A new file's evaluator starts at the position it first records:
	// wait for it, or the invite below could count as older history.
	e.settle(t, s)
	next := func() [2]string {
		t.Helper()
		select {
		case got := <-desk:
			return got
		case <-time.After(10 * time.Second):
			t.Fatal("no desktop notification")
			return [2]string{}
		}
	}
	ringing := func() []string {
		var out []string
		for _, c := range s.Ringing() {
			out = append(out, fmt.Sprintf("%s %s %s %s", c.CallID, c.Caller, c.CallerName, c.RoomID))
		}
		return out
	}
	want := func(callID string) []string { return []string{callID + " " + anna + " Anna " + roomID} }

	e.sendCall(t, anna, roomID, "m.call.invite", "i1", call("c1", 60_000))
	e.settle(t, s)
	if got := ringing(); !slices.Equal(got, want("c1")) {
		t.Fatalf("after the invite: %q", got)
	}
	if got := next(); got != [2]string{"Anna is calling", "Open your chat app to answer"} {
		t.Fatalf("notification %q", got)
	}
	e.sendCall(t, anna, roomID, "m.call.hangup", "h1", call("c1", 0))
	e.settle(t, s)
	if got := ringing(); len(got) != 0 {
		t.Fatalf("after the caller hung up: %q", got)
	}

	for i, end := range []string{"m.call.answer", "m.call.reject"} {
		id := fmt.Sprintf("c%d", i+2)
		e.sendCall(t, anna, roomID, "m.call.invite", "i"+id, call(id, 60_000))
		e.settle(t, s)
		if got := ringing(); !slices.Equal(got, want(id)) {
			t.Fatalf("after invite %s: %q", id, got)
		}
		next()
		e.sendCall(t, owner, roomID, end, "e"+id, call(id, 0))
		e.settle(t, s)
		if got := ringing(); len(got) != 0 {
			t.Fatalf("after the owner's %s: %q", end, got)
		}
	}

	e.sendCall(t, anna, roomID, "m.call.invite", "i4", call("c4", 60_000))
	e.settle(t, s)
	next()
	skew.Store(61_000)
	if got := ringing(); len(got) != 0 {
		t.Fatalf("after its lifetime: %q", got)
	}

	// Seen after its lifetime (a late delivery: here, our clock is two
	// minutes ahead of the sender's), and the owner's own call.
	skew.Store(120_000)
	e.sendCall(t, anna, roomID, "m.call.invite", "i5", call("c5", 60_000))
	e.sendCall(t, owner, roomID, "m.call.invite", "i6", call("c6", 60_000))
	e.say(t, anna, roomID, "m1", text("still there?"))
	e.settle(t, s)
	if got := ringing(); len(got) != 0 {
		t.Fatalf("a stale invite or the owner's own rings: %q", got)
	}
	// Notifications of separate batches may arrive in either order, so
	// this only catches a stale call notified in the message's batch;
	// TestCallNotification checks the rule itself.
	if got := next(); got != [2]string{"Anna", "still there?"} { // the room has no name
		t.Fatalf("notified %q, want only the message after the calls", got)
	}
}

// invite is an evaluated m.call.invite from anna in roomID for the given
// recipients.
func invite(roomID, callID string, ts, lifetime int64, recipients ...string) evaluated {
	b, _ := json.Marshal(call(callID, lifetime))
	e := evaluated{pe: &room.PushEvent{RoomID: roomID, SenderName: "Anna",
		Event: room.ClientEvent{Type: "m.call.invite", Sender: "@anna:x", OriginServerTS: ts, Content: b}}}
	for _, r := range recipients {
		e.results = append(e.results, Result{UserID: r, Notify: true})
	}
	return e
}

func callEvent(typ, roomID, callID string) evaluated {
	b, _ := json.Marshal(call(callID, 0))
	return evaluated{pe: &room.PushEvent{RoomID: roomID, Event: room.ClientEvent{Type: typ, Sender: "@bob:x", Content: b}}}
}

// TestRingingSetRules: who a call rings for, how long, and the bound.
func TestRingingSetRules(t *testing.T) {
	const owner = "@owner:x"
	isOwner := func(u string) bool { return u == owner }
	now := time.UnixMilli(1_700_000_000_000)
	ms := now.UnixMilli()
	ids := func(rg *ringing, at time.Time) []string {
		var out []string
		for _, c := range rg.list(at) {
			out = append(out, c.RoomID+"/"+c.CallID)
		}
		return out
	}

	var rg ringing
	withInvitee := invite("!a", "other", ms, 60_000, owner)
	withInvitee.pe.Event.Content, _ = json.Marshal(map[string]any{"call_id": "other", "lifetime": 60_000, "invitee": "@bob:x"})
	forMe := invite("!a", "mine", ms, 60_000, owner)
	forMe.pe.Event.Content, _ = json.Marshal(map[string]any{"call_id": "mine", "lifetime": 60_000, "invitee": owner})
	rg.track([]evaluated{
		invite("!a", "guest-only", ms, 60_000, "@guest:x"), // the owner's rules do not notify
		withInvitee,                         // calls someone else in the room
		forMe,                               // calls the owner by name
		invite("!a", "", ms, 60_000, owner), // no call_id
		invite("!a", "late", ms-61_000, 60_000, owner),
		invite("!a", "c1", ms, 60_000, owner),
		invite("!b", "c1", ms, 60_000, owner),
		callEvent("m.call.hangup", "!b", "c1"), // ends the call in !b only
	}, isOwner, now)
	if got := ids(&rg, now); !slices.Equal(got, []string{"!a/mine", "!a/c1"}) {
		t.Fatalf("ringing %q", got)
	}

	// Lifetimes: none given is a minute, a huge one is capped, a sender
	// clock ahead of ours counts from now.
	for _, c := range []struct {
		ts, lifetime int64
		want         time.Duration
	}{
		{ms, 0, defaultRingLifetime},
		{ms, -5, defaultRingLifetime},
		{ms, 1 << 62, maxRingLifetime},
		{ms + 3_600_000, 30_000, 30 * time.Second},
		{ms - 10_000, 30_000, 20 * time.Second},
	} {
		if got := ringUntil(c.ts, c.lifetime, now).Sub(now); got != c.want {
			t.Errorf("ts %+d ms, lifetime %d: rings %v, want %v", c.ts-ms, c.lifetime, got, c.want)
		}
	}

	// Bounded: a flood of invites keeps the newest maxRinging.
	var flood []evaluated
	for i := range maxRinging + 4 {
		flood = append(flood, invite("!f", fmt.Sprint(i), ms, 60_000, owner))
	}
	var fl ringing
	fl.track(flood, isOwner, now)
	got := ids(&fl, now)
	if len(got) != maxRinging || got[0] != "!f/4" || got[maxRinging-1] != fmt.Sprintf("!f/%d", maxRinging+3) {
		t.Fatalf("after %d invites: %q", maxRinging+4, got)
	}
	// The same invite seen again (a retried federation delivery) rings once.
	fl.track([]evaluated{invite("!f", "4", ms, 60_000, owner)}, isOwner, now)
	if got := ids(&fl, now); len(got) != maxRinging || got[maxRinging-1] != "!f/4" {
		t.Fatalf("a repeated invite: %q", got)
	}
	if got := ids(&fl, now.Add(time.Minute)); len(got) != 0 {
		t.Fatalf("after every lifetime: %q", got)
	}
}

// TestCallNotification: a call's desktop notification names the caller
// (display name, else user ID) and says where to answer; none for an
// expired invite or in do-not-disturb, though the call still rings for
// the tray there.
func TestCallNotification(t *testing.T) {
	const owner = "@owner:x"
	now := time.UnixMilli(1_700_000_000_000)
	ms := now.UnixMilli()
	noName := invite("!r", "c2", ms, 60_000, owner)
	noName.pe.SenderName = ""
	for _, tc := range []struct {
		name, mode string
		ev         evaluated
		want       [2]string // zero: no notification
		rings      bool
	}{
		{"display name", "on", invite("!r", "c1", ms, 60_000, owner), [2]string{"Anna is calling", "Open your chat app to answer"}, true},
		{"no display name", "on", noName, [2]string{"@anna:x is calling", "Open your chat app to answer"}, true},
		{"expired before we saw it", "on", invite("!r", "c3", ms-90_000, 60_000, owner), [2]string{}, false},
		{"do not disturb", "off", invite("!r", "c4", ms, 60_000, owner), [2]string{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Service{now: func() time.Time { return now }}
			s.SetDesktop(make(recordingDesktop), DesktopOptions{Owner: func(u string) bool { return u == owner },
				Active: func(string) bool { return false }, Mode: func() string { return tc.mode }})
			_, notes := s.desktopNotes([]evaluated{tc.ev})
			if rings := len(s.Ringing()) == 1; rings != tc.rings {
				t.Errorf("ringing %v, want %v", rings, tc.rings)
			}
			var got [][2]string
			for _, n := range notes {
				got = append(got, [2]string{n.title, n.body})
			}
			var want [][2]string
			if tc.want != ([2]string{}) {
				want = append(want, tc.want)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("notifications %q, want %q", got, want)
			}
		})
	}
}
