package agent

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/hearth-chat/hearth/internal/room"
)

// testCaller is a VoIP v1 caller made of real parts: a pion peer
// connection on loopback and call events through the room engine.
type testCaller struct {
	e      *env
	user   string
	roomID string
	callID string
	party  string
	pc     *webrtc.PeerConnection
	audio  *webrtc.TrackLocalStaticRTP    // for callers that write RTP themselves
	tone   *webrtc.TrackLocalStaticSample // for callers that play a file
	got    chan []byte                    // payloads of the RTP packets received
	pos    uint64                         // where the caller reads events from
	start  uint64                         // the position before the call
}

func newCaller(e *env, user, roomID string) *testCaller { return newCallerWith(e, user, roomID, false) }

// newCallerWith makes a caller whose audio track takes samples (played
// from an Ogg/Opus file) when samples is set, RTP packets otherwise.
func newCallerWith(e *env, user, roomID string, samples bool) *testCaller {
	e.t.Helper()
	pc, err := testAPI().NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { pc.GracefulClose() })
	opus := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}
	c := &testCaller{e: e, user: user, roomID: roomID, callID: "call-" + rand.Text()[:8], party: "CALLERDEV",
		pc: pc, got: make(chan []byte, 1024)}
	var track webrtc.TrackLocal
	var err2 error
	if samples {
		c.tone, err2 = webrtc.NewTrackLocalStaticSample(opus, "audio", "caller")
		track = c.tone
	} else {
		c.audio, err2 = webrtc.NewTrackLocalStaticRTP(opus, "audio", "caller")
		track = c.audio
	}
	if err2 != nil {
		e.t.Fatal(err2)
	}
	if _, err := pc.AddTrack(track); err != nil {
		e.t.Fatal(err)
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			select {
			case c.got <- p.Payload:
			default:
			}
		}
	})
	c.pos, _ = e.rooms.Pos()
	c.start = c.pos
	return c
}

// invite sends m.call.invite with a complete offer.
func (c *testCaller) invite(extra map[string]any) {
	c.e.t.Helper()
	offer, err := c.pc.CreateOffer(nil)
	if err != nil {
		c.e.t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(offer); err != nil {
		c.e.t.Fatal(err)
	}
	<-gathered
	content := map[string]any{"call_id": c.callID, "party_id": c.party, "version": "1", "lifetime": 60000,
		"offer": map[string]any{"type": "offer", "sdp": c.pc.LocalDescription().SDP}}
	for k, v := range extra {
		content[k] = v
	}
	c.e.send(c.user, c.roomID, evInvite, content)
}

// event sends another call event of this call.
func (c *testCaller) event(typ string, fields map[string]any) {
	c.e.t.Helper()
	fields["call_id"], fields["party_id"], fields["version"] = c.callID, c.party, "1"
	c.e.send(c.user, c.roomID, typ, fields)
}

// awaitAnswer waits for the answer and takes it, selecting it.
func (c *testCaller) awaitAnswer(d time.Duration) *callContent {
	c.e.t.Helper()
	ev := c.e.waitFor(&c.pos, d, "m.call.answer", callEvent(evAnswer, c.callID))
	ans, err := parseCall(ev.Content)
	if err != nil || ans.Answer == nil {
		c.e.t.Fatalf("answer: %v %s", err, ev.Content)
	}
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ans.Answer.SDP}); err != nil {
		c.e.t.Fatalf("set answer: %v", err)
	}
	c.event(evSelectAnswer, map[string]any{"selected_party_id": ans.PartyID})
	return ans
}

// packet is the nth test packet's payload: distinct, so an echo can be
// matched to what was sent.
func packet(n int) []byte { return fmt.Appendf(nil, "opus-frame-%06d", n) }

// sendAndExpectEcho sends packets until the first echoed one arrives,
// then checks that what comes back is what went out.
func (c *testCaller) sendAndExpectEcho(d time.Duration) {
	c.e.t.Helper()
	deadline := time.Now().Add(d)
	sent := map[string]bool{}
	for n := 0; ; n++ {
		if time.Now().After(deadline) {
			c.e.t.Fatalf("nothing echoed within %v (%d packets sent)", d, n)
		}
		p := packet(n)
		sent[string(p)] = true
		c.audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: uint16(n),
			Timestamp: uint32(n * 960), SSRC: 1234}, Payload: p})
		select {
		case got := <-c.got:
			if !sent[string(got)] || !bytes.HasPrefix(got, []byte("opus-frame-")) {
				c.e.t.Fatalf("echoed payload %q was never sent", got)
			}
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (c *testCaller) hangup() { c.event(evHangup, map[string]any{"reason": "user_hangup"}) }

// noEventFrom says whether no event of type typ for this call was sent
// by party since the caller started.
func (c *testCaller) noEventFrom(typ, party string) bool {
	c.e.t.Helper()
	none := true
	cur, _ := c.e.rooms.Pos()
	c.e.rooms.PushEventsAfter(c.start, cur, func(pe *room.PushEvent) error {
		if pe.Event.Type == typ {
			if cc, err := parseCall(pe.Event.Content); err == nil && cc.CallID == c.callID && cc.PartyID == party {
				none = false
			}
		}
		return nil
	})
	return none
}
