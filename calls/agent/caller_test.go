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
	audio  *webrtc.TrackLocalStaticRTP
	got    chan []byte // payloads of the RTP packets received
	pos    uint64      // where the caller reads events from
}

func newCaller(e *env, user, roomID string) *testCaller {
	e.t.Helper()
	pc, err := testAPI().NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { pc.GracefulClose() })
	audio, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "caller")
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := pc.AddTrack(audio); err != nil {
		e.t.Fatal(err)
	}
	c := &testCaller{e: e, user: user, roomID: roomID, callID: "call-" + rand.Text()[:8], party: "CALLERDEV",
		pc: pc, audio: audio, got: make(chan []byte, 1024)}
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

var _ = room.SendRequest{}
