package agent

import (
	"runtime"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/hearth-chat/hearth/internal/room"
)

// TestVoicemailNotWhenOwnerAnswers: another device of the owner answers
// before voicemail_after; voicemail stops ringing and never answers.
func TestVoicemailNotWhenOwnerAnswers(t *testing.T) {
	e, _, _ := newVoicemailEnv(t, Config{VoicemailAfter: time.Hour})
	alice := user("alice")
	roomID := e.room(alice, owner.UserID)
	e.agent.Start()
	base := runtime.NumGoroutine()
	c := newCaller(e, alice, roomID)
	c.invite(nil)
	e.handled()
	if e.agent.Active() != 1 {
		t.Fatalf("voicemail is not ringing: %d calls", e.agent.Active())
	}
	e.send(owner.UserID, roomID, evAnswer, map[string]any{"call_id": c.callID, "party_id": "PHONE", "version": "1",
		"answer": map[string]any{"type": "answer", "sdp": "v=0"}})
	c.pc.GracefulClose() // the caller's own connection is not the agent's to count
	settle(t, e.agent, base)
	if !c.noEventFrom(evAnswer, owner.DeviceID) {
		t.Fatal("voicemail answered a call the owner took")
	}
}

// TestVoicemailCallerHangsUpWhileRinging: the caller gives up before
// voicemail answers; the ringing call is released and nothing is sent.
func TestVoicemailCallerHangsUpWhileRinging(t *testing.T) {
	e, _, _ := newVoicemailEnv(t, Config{VoicemailAfter: time.Hour})
	alice := user("alice")
	roomID := e.room(alice, owner.UserID)
	e.agent.Start()
	base := runtime.NumGoroutine()
	c := newCaller(e, alice, roomID)
	c.invite(nil)
	e.handled()
	c.hangup()
	c.pc.GracefulClose()
	settle(t, e.agent, base)
	if !c.noEventFrom(evAnswer, owner.DeviceID) || !c.noEventFrom(evHangup, owner.DeviceID) {
		t.Fatal("voicemail sent something for a call the caller ended")
	}
}

// TestVoicemailLifetime: the invite's lifetime caps voicemail_after (the
// agent answers before the caller's client gives up); an invite whose
// lifetime leaves no time to answer is not answered at all.
func TestVoicemailLifetime(t *testing.T) {
	e, _, _ := newVoicemailEnv(t, Config{VoicemailAfter: time.Hour})
	alice := user("alice")
	roomID := e.room(alice, owner.UserID)
	e.agent.Start()
	base := runtime.NumGoroutine()

	short := newCaller(e, alice, roomID)
	short.invite(map[string]any{"lifetime": 900}) // under the 1 s margin
	e.handled()
	short.pc.GracefulClose()
	settle(t, e.agent, base)
	if !short.noEventFrom(evAnswer, owner.DeviceID) {
		t.Fatal("voicemail answered an invite about to expire")
	}

	capped := newCaller(e, alice, roomID)
	capped.invite(map[string]any{"lifetime": 1500})
	if ans := capped.awaitAnswer(10 * time.Second); ans.PartyID != owner.DeviceID {
		t.Fatalf("answer from %q", ans.PartyID)
	}
	capped.hangup()
	capped.pc.GracefulClose()
	settle(t, e.agent, base)
}

// TestVoicemailOnlyOneToOne: a call in a room of three, or from the owner
// themself, is not voicemail's.
func TestVoicemailOnlyOneToOne(t *testing.T) {
	e, _, _ := newVoicemailEnv(t, Config{VoicemailAfter: time.Hour})
	alice := user("alice")
	group := e.room(alice, owner.UserID, user("bob"))
	own := e.room(owner.UserID, alice)
	e.agent.Start()
	newCaller(e, alice, group).invite(nil)
	newCaller(e, owner.UserID, own).invite(nil)
	e.handled()
	if n := e.agent.Active(); n != 0 {
		t.Fatalf("%d calls taken, want none", n)
	}
}

// TestSelectAnswerElsewhere: the caller selects another party's answer;
// echo leaves the call without a hang-up of its own.
func TestSelectAnswerElsewhere(t *testing.T) {
	e := newEnv(t, Config{ConnectTimeout: time.Hour})
	alice := user("alice")
	roomID := e.room(alice, echo.UserID)
	e.agent.Start()
	base := runtime.NumGoroutine()
	c := newCaller(e, alice, roomID)
	c.invite(nil)
	c.e.waitFor(&c.pos, 10*time.Second, "answer", callEvent(evAnswer, c.callID))
	c.event(evSelectAnswer, map[string]any{"selected_party_id": "SOMEONEELSE"})
	c.pc.GracefulClose()
	settle(t, e.agent, base)
	if !c.noEventFrom(evHangup, echo.DeviceID) {
		t.Fatal("echo hung up a call it was not selected for")
	}
}

// TestBadOfferHangsUp: an offer the peer connection refuses gets
// m.call.hangup (ice_failed) and nothing else; the call is released.
func TestBadOfferHangsUp(t *testing.T) {
	e := newEnv(t, Config{})
	alice := user("alice")
	roomID := e.room(alice, echo.UserID)
	e.agent.Start()
	base := runtime.NumGoroutine()
	pos, _ := e.rooms.Pos()
	e.send(alice, roomID, evInvite, map[string]any{"call_id": "bad", "party_id": "P", "version": "1", "lifetime": 60000,
		"offer": map[string]any{"type": "offer", "sdp": "v=0\r\nthis is not SDP\r\n"}})
	ev := e.waitFor(&pos, 10*time.Second, "hangup", func(ev *room.ClientEvent) bool {
		return ev.Sender == echo.UserID
	})
	c, _ := parseCall(ev.Content)
	if ev.Type != evHangup || c.Reason != reasonICEFailed || c.PartyID != echo.DeviceID {
		t.Fatalf("first event from echo: %s %s", ev.Type, ev.Content)
	}
	settle(t, e.agent, base)
}

// TestNoMediaTimesOut: a caller that never takes the answer (so no media
// ever connects) is hung up on with ice_timeout after the connect
// timeout, and voicemail posts nothing.
func TestNoMediaTimesOut(t *testing.T) {
	e, vm, _ := newVoicemailEnv(t, Config{ConnectTimeout: 500 * time.Millisecond, VoicemailAfter: 10 * time.Millisecond})
	alice := user("alice")
	roomID := e.room(alice, owner.UserID)
	e.agent.Start()
	base := runtime.NumGoroutine()
	c := newCaller(e, alice, roomID)
	c.invite(nil)
	ev := e.waitFor(&c.pos, 10*time.Second, "hangup", callEvent(evHangup, c.callID))
	if cc, _ := parseCall(ev.Content); cc.Reason != reasonICETimeout || ev.Sender != owner.UserID {
		t.Fatalf("hangup %s from %s", ev.Content, ev.Sender)
	}
	c.pc.GracefulClose()
	settle(t, e.agent, base)
	if !c.noEventFrom("m.room.message", "") || len(vm.Messages()) != 0 {
		t.Fatal("a voicemail was posted for a call without media")
	}
}

// TestInviteFlood: invites over the bounds (here two per caller) are
// ignored; the rest are answered.
func TestInviteFlood(t *testing.T) {
	e := newEnv(t, Config{ConnectTimeout: time.Hour, MaxPerCaller: 2, MaxPerRoom: 10, MaxCalls: 10})
	alice := user("alice")
	roomID := e.room(alice, echo.UserID)
	e.agent.Start()
	base := runtime.NumGoroutine()
	var callers []*testCaller
	for range 5 {
		c := newCaller(e, alice, roomID)
		c.invite(nil)
		callers = append(callers, c)
	}
	e.handled()
	if n := e.agent.Active(); n != 2 {
		t.Fatalf("%d calls taken, want 2", n)
	}
	for _, c := range callers {
		c.hangup()
		c.pc.GracefulClose()
	}
	settle(t, e.agent, base)
}

// TestTrickledCandidates: a caller that sends its invite before gathering
// (as Element does) and its candidates in m.call.candidates afterwards is
// answered and connects.
func TestTrickledCandidates(t *testing.T) {
	e := newEnv(t, Config{})
	alice := user("alice")
	roomID := e.room(alice, echo.UserID)
	e.agent.Start()
	c := newCaller(e, alice, roomID)
	var cands []map[string]any
	done := make(chan struct{})
	c.pc.OnICECandidate(func(ic *webrtc.ICECandidate) {
		if ic == nil {
			close(done)
			return
		}
		j := ic.ToJSON()
		cands = append(cands, map[string]any{"candidate": j.Candidate, "sdpMid": j.SDPMid, "sdpMLineIndex": j.SDPMLineIndex})
	})
	offer, err := c.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	c.e.send(alice, roomID, evInvite, map[string]any{"call_id": c.callID, "party_id": c.party, "version": "1",
		"lifetime": 60000, "offer": map[string]any{"type": "offer", "sdp": offer.SDP}}) // no candidates in it
	<-done
	c.event(evCandidates, map[string]any{"candidates": append(cands, map[string]any{"candidate": ""})})
	c.awaitAnswer(10 * time.Second)
	waitConnected(t, c.pc)
	c.hangup()
}

// TestRenegotiation: an m.call.negotiate offer during the call gets an
// m.call.negotiate answer from the agent's party.
func TestRenegotiation(t *testing.T) {
	e := newEnv(t, Config{})
	alice := user("alice")
	roomID := e.room(alice, echo.UserID)
	e.agent.Start()
	c := newCaller(e, alice, roomID)
	c.invite(nil)
	c.awaitAnswer(10 * time.Second)
	waitConnected(t, c.pc)
	offer, err := c.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	c.event(evNegotiate, map[string]any{"lifetime": 30000,
		"description": map[string]any{"type": "offer", "sdp": c.pc.LocalDescription().SDP}})
	ev := e.waitFor(&c.pos, 10*time.Second, "negotiate answer", func(ev *room.ClientEvent) bool {
		return ev.Type == evNegotiate && ev.Sender == echo.UserID
	})
	n, _ := parseCall(ev.Content)
	if n.Description == nil || n.Description.Type != "answer" || n.PartyID != echo.DeviceID {
		t.Fatalf("negotiate reply %s", ev.Content)
	}
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: n.Description.SDP}); err != nil {
		t.Fatalf("the renegotiated answer: %v", err)
	}
	c.hangup()
}

// TestEchoCap: an echo call is hung up (user_hangup) at EchoMax.
func TestEchoCap(t *testing.T) {
	e := newEnv(t, Config{EchoMax: 300 * time.Millisecond})
	alice := user("alice")
	roomID := e.room(alice, echo.UserID)
	e.agent.Start()
	base := runtime.NumGoroutine()
	c := newCaller(e, alice, roomID)
	c.invite(nil)
	c.awaitAnswer(10 * time.Second)
	ev := e.waitFor(&c.pos, 10*time.Second, "hangup", callEvent(evHangup, c.callID))
	if h, _ := parseCall(ev.Content); ev.Sender != echo.UserID || h.Reason != reasonUserHangup {
		t.Fatalf("hangup %s from %s", ev.Content, ev.Sender)
	}
	c.pc.GracefulClose()
	settle(t, e.agent, base)
}
