package e2e

import (
	"crypto/rand"
	"net"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// callCaller is a VoIP v1 caller made of the libraries a real client
// uses: mautrix-go for the m.call.* signalling through the daemon, pion
// for the media, on loopback.
type callCaller struct {
	t      *testing.T
	c      *mautrix.Client
	roomID id.RoomID
	callID string
	party  string
	pc     *webrtc.PeerConnection
	audio  *webrtc.TrackLocalStaticRTP
	got    chan *rtp.Packet // what the other party sends
	since  string
}

func newCallCaller(t *testing.T, c *mautrix.Client, roomID id.RoomID) *callCaller {
	t.Helper()
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	m := &webrtc.MediaEngine{}
	noErr(t, m.RegisterDefaultCodecs(), "codecs")
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(m)).NewPeerConnection(webrtc.Configuration{})
	noErr(t, err, "caller peer connection")
	t.Cleanup(func() { pc.Close() })
	audio, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "caller")
	noErr(t, err, "caller track")
	_, err = pc.AddTrack(audio)
	noErr(t, err, "add track")
	cc := &callCaller{t: t, c: c, roomID: roomID, callID: "e2e-" + rand.Text()[:10], party: string(c.DeviceID),
		pc: pc, audio: audio, got: make(chan *rtp.Packet, 4096)}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			select {
			case cc.got <- p:
			default:
			}
		}
	})
	cc.since = Quiesce(t, c, "")
	return cc
}

func (cc *callCaller) send(typ string, fields map[string]any) {
	cc.t.Helper()
	fields["call_id"], fields["party_id"], fields["version"] = cc.callID, cc.party, "1"
	_, err := cc.c.SendMessageEvent(ctx(cc.t), cc.roomID, event.Type{Type: typ, Class: event.MessageEventType}, fields)
	noErr(cc.t, err, "send %s", typ)
}

// invite sends m.call.invite with a complete offer (candidates in the SDP).
func (cc *callCaller) invite() {
	cc.t.Helper()
	offer, err := cc.pc.CreateOffer(nil)
	noErr(cc.t, err, "offer")
	gathered := webrtc.GatheringCompletePromise(cc.pc)
	noErr(cc.t, cc.pc.SetLocalDescription(offer), "set offer")
	<-gathered
	cc.send("m.call.invite", map[string]any{"lifetime": 60000,
		"offer": map[string]any{"type": "offer", "sdp": cc.pc.LocalDescription().SDP}})
}

// await waits in /sync for an event of this call of type typ not sent by
// the caller's own device.
func (cc *callCaller) await(typ string) *event.Event {
	cc.t.Helper()
	var found *event.Event
	resp := SyncUntil(cc.t, cc.c, cc.since, "", typ, func(r *mautrix.RespSync) bool {
		if jr := r.Rooms.Join[cc.roomID]; jr != nil {
			for _, ev := range jr.Timeline.Events {
				if ev.Type.Type == typ && ev.Content.Raw["call_id"] == cc.callID && ev.Content.Raw["party_id"] != cc.party {
					found = ev
					return true
				}
			}
		}
		return false
	})
	cc.since = resp.NextBatch
	return found
}

// takeAnswer waits for the answer, applies it and selects it.
func (cc *callCaller) takeAnswer() *event.Event {
	cc.t.Helper()
	ev := cc.await("m.call.answer")
	ans, _ := ev.Content.Raw["answer"].(map[string]any)
	sdp, _ := ans["sdp"].(string)
	noErr(cc.t, cc.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}), "set answer")
	cc.send("m.call.select_answer", map[string]any{"selected_party_id": ev.Content.Raw["party_id"]})
	return ev
}

func (cc *callCaller) hangup() { cc.send("m.call.hangup", map[string]any{"reason": "user_hangup"}) }

// TestEchoCall: a caller invites @echo to a room, echo joins, the caller
// calls, echo answers as its own device and the caller's audio comes
// back unchanged.
func TestEchoCall(t *testing.T) {
	d := StartDaemon(t)
	alice := d.Register("alice")
	echo := d.UserID("echo")
	roomID := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{echo}})
	SyncUntil(t, alice, "", "", "echo joins", func(r *mautrix.RespSync) bool {
		jr := r.Rooms.Join[roomID]
		if jr == nil {
			return false
		}
		for _, ev := range jr.Timeline.Events {
			if ev.Type == event.StateMember && ev.GetStateKey() == string(echo) && ev.Content.Raw["membership"] == "join" {
				return true
			}
		}
		return false
	})
	cc := newCallCaller(t, alice, roomID)
	cc.invite()
	ans := cc.takeAnswer()
	if ans.Sender != echo {
		t.Fatalf("answer from %s, want %s", ans.Sender, echo)
	}
	// Send numbered packets until they come back; each must be one sent.
	sent := map[string]bool{}
	deadline := time.Now().Add(waitDeadline)
	for n := 0; ; n++ {
		if time.Now().After(deadline) {
			t.Fatalf("nothing echoed within %v", waitDeadline)
		}
		payload := []byte("tone-" + time.Now().Format("150405.000000"))
		sent[string(payload)] = true
		cc.audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: uint16(n),
			Timestamp: uint32(n * 960), SSRC: 42}, Payload: payload})
		select {
		case p := <-cc.got:
			if !sent[string(p.Payload)] {
				t.Fatalf("echo sent back %q, which the caller never sent", p.Payload)
			}
			cc.hangup()
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}
