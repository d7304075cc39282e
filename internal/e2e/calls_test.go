package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/calls/media"
	"github.com/hearth-chat/hearth/calls/media/mediatest"

	"github.com/godbus/dbus/v5"
	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// callCaller is a VoIP v1 party made of the libraries a real client
// uses: mautrix-go for the m.call.* signalling through the daemon, pion
// for the media, on loopback unless callNet says otherwise. It calls
// (invite, takeAnswer) or answers a call (answerInvite) as a person's
// client would.
type callCaller struct {
	t      *testing.T
	c      *mautrix.Client
	roomID id.RoomID
	callID string // set by invite, or learnt from the invite answered
	party  string
	pc     *webrtc.PeerConnection
	audio  *webrtc.TrackLocalStaticRTP    // a caller writing RTP itself
	tone   *webrtc.TrackLocalStaticSample // a caller playing a file
	got    chan *rtp.Packet               // what the other party sends
	since  string
	// A caller playing a file records what comes back: stopRecording
	// ends the recording, whose file then arrives on recorded.
	stopRecording context.CancelFunc
	recorded      chan []byte
}

// callNet is where a call party's media goes: by default host candidates
// on loopback only. Host puts its sockets in a namespace host
// (netns_test.go) with host candidates on the host's LAN address only;
// ICEServers and Relay (ICE transport policy relay: relay candidates
// only) are the WebRTC configuration's.
type callNet struct {
	Host       *Host
	ICEServers []webrtc.ICEServer
	Relay      bool
}

// newCallCallerWith makes a caller whose audio takes samples (an Ogg/Opus
// file played in real time) when samples is set, else RTP packets.
func newCallCallerWith(t *testing.T, c *mautrix.Client, roomID id.RoomID, samples bool) *callCaller {
	t.Helper()
	return newCallParty(t, c, roomID, samples, callNet{})
}

// newCallParty is newCallCallerWith with the media on the network n.
func newCallParty(t *testing.T, c *mautrix.Client, roomID id.RoomID, samples bool, n callNet) *callCaller {
	t.Helper()
	var se webrtc.SettingEngine
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if n.Host == nil {
		se.SetIncludeLoopbackCandidate(true)
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	} else {
		lan := net.ParseIP(n.Host.IP)
		se.SetIPFilter(func(ip net.IP) bool { return ip.Equal(lan) })
		se.SetNet(hostNet(t, n.Host))
	}
	m := &webrtc.MediaEngine{}
	noErr(t, m.RegisterDefaultCodecs(), "codecs")
	conf := webrtc.Configuration{ICEServers: n.ICEServers}
	if n.Relay {
		conf.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(m)).NewPeerConnection(conf)
	noErr(t, err, "caller peer connection")
	t.Cleanup(func() { pc.Close() })
	cc := &callCaller{t: t, c: c, roomID: roomID, callID: "e2e-" + rand.Text()[:10], party: string(c.DeviceID),
		pc: pc, got: make(chan *rtp.Packet, 4096)}
	opus := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}
	var track webrtc.TrackLocal
	if samples {
		cc.tone, err = webrtc.NewTrackLocalStaticSample(opus, "audio", "caller")
		track = cc.tone
	} else {
		cc.audio, err = webrtc.NewTrackLocalStaticRTP(opus, "audio", "caller")
		track = cc.audio
	}
	noErr(t, err, "caller track")
	_, err = pc.AddTrack(track)
	noErr(t, err, "add track")
	recCtx, stop := context.WithCancel(context.Background())
	cc.stopRecording, cc.recorded = stop, make(chan []byte, 1)
	t.Cleanup(stop)
	dir := t.TempDir()
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if samples {
			rec, err := media.Record(recCtx, tr, media.RecordOptions{Dir: dir, MaxDuration: time.Minute})
			var file []byte
			if err == nil {
				file, _ = os.ReadFile(rec.Path)
			}
			cc.recorded <- file
			return
		}
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
	cc.send("m.call.invite", map[string]any{"lifetime": 60000,
		"offer": map[string]any{"type": "offer", "sdp": gatheredOffer(cc.t, cc.pc)}})
}

// gatheredOffer makes pc's offer and waits for its ICE candidates, so the
// SDP holds them all (no trickling needed).
func gatheredOffer(t *testing.T, pc *webrtc.PeerConnection) string {
	t.Helper()
	offer, err := pc.CreateOffer(nil)
	noErr(t, err, "offer")
	gathered := webrtc.GatheringCompletePromise(pc)
	noErr(t, pc.SetLocalDescription(offer), "set offer")
	<-gathered
	return pc.LocalDescription().SDP
}

// await waits in /sync for an event of this call (of any call while the
// call ID is not known) of type typ not sent by the party's own device.
func (cc *callCaller) await(typ string) *event.Event {
	cc.t.Helper()
	var found *event.Event
	resp := SyncUntil(cc.t, cc.c, cc.since, "", typ, func(r *mautrix.RespSync) bool {
		if jr := r.Rooms.Join[cc.roomID]; jr != nil {
			for _, ev := range jr.Timeline.Events {
				if ev.Type.Type == typ && (cc.callID == "" || ev.Content.Raw["call_id"] == cc.callID) &&
					ev.Content.Raw["party_id"] != cc.party {
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

// answerInvite is the callee's side: it waits for an m.call.invite
// whose offer has its SDP complete and answers it with its own party_id
// and complete SDP (Client-Server API §"Voice over IP": m.call.answer);
// selected then waits for the caller's m.call.select_answer.
func (cc *callCaller) answerInvite() (invite *event.Event) {
	cc.t.Helper()
	cc.callID = ""
	invite = cc.await("m.call.invite")
	cc.callID, _ = invite.Content.Raw["call_id"].(string)
	offer, _ := invite.Content.Raw["offer"].(map[string]any)
	sdp, _ := offer["sdp"].(string)
	noErr(cc.t, cc.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}), "set offer")
	ans, err := cc.pc.CreateAnswer(nil)
	noErr(cc.t, err, "answer")
	gathered := webrtc.GatheringCompletePromise(cc.pc)
	noErr(cc.t, cc.pc.SetLocalDescription(ans), "set answer")
	<-gathered
	cc.send("m.call.answer", map[string]any{"answer": map[string]any{"type": "answer", "sdp": cc.pc.LocalDescription().SDP}})
	return invite
}

// selected waits until the caller selects this party's answer.
func (cc *callCaller) selected() {
	cc.t.Helper()
	sel := cc.await("m.call.select_answer")
	if sel.Content.Raw["selected_party_id"] != cc.party {
		cc.t.Fatalf("the caller selected %v, not this answer (%s)", sel.Content.Raw["selected_party_id"], cc.party)
	}
}

// connected waits until the media is connected.
func (cc *callCaller) connected() {
	cc.t.Helper()
	waitFor(cc.t, string(cc.c.UserID)+"'s media connected", func() (bool, bool) {
		return true, cc.pc.ConnectionState() == webrtc.PeerConnectionStateConnected
	})
}

// selectedPair is the ICE candidate pair the media flows over (the one
// DTLS transport carries every track: BUNDLE).
func (cc *callCaller) selectedPair() *webrtc.ICECandidatePair {
	cc.t.Helper()
	pair, err := cc.pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		cc.t.Fatalf("%s has no selected candidate pair: %v", cc.c.UserID, err)
	}
	return pair
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
	awaitEcho(t, alice, roomID, echo)
	callEcho(t, alice, roomID, echo)
}

// awaitEcho waits until echo joined roomID and said hello: its server
// then has the room, so a call placed now reaches it.
func awaitEcho(t *testing.T, c *mautrix.Client, roomID id.RoomID, echo id.UserID) {
	t.Helper()
	SyncUntil(t, c, "", "", string(echo)+" says hello", func(r *mautrix.RespSync) bool {
		jr := r.Rooms.Join[roomID]
		if jr == nil {
			return false
		}
		for _, ev := range jr.Timeline.Events {
			if ev.Type == event.EventMessage && ev.Sender == echo && ev.Content.Raw["msgtype"] == "m.notice" {
				return true
			}
		}
		return false
	})
}

// callEcho calls echo from c in roomID, plays the 440 Hz tone and checks
// that what comes back decodes to the tone.
func callEcho(t *testing.T, c *mautrix.Client, roomID id.RoomID, echo id.UserID) {
	t.Helper()
	cc := newCallCallerWith(t, c, roomID, true)
	cc.invite()
	ans := cc.takeAnswer()
	if ans.Sender != echo {
		t.Fatalf("answer from %s, want %s", ans.Sender, echo)
	}
	cc.toneComesBack()
	cc.hangup()
}

// toneComesBack waits for the call's media, plays the 440 Hz tone and
// checks that what came back (recorded while it played) decodes to it.
func (cc *callCaller) toneComesBack() {
	t := cc.t
	t.Helper()
	waitFor(t, "media connected", func() (bool, bool) {
		return true, cc.pc.ConnectionState() == webrtc.PeerConnectionStateConnected
	})
	noErr(t, media.PlayOgg(ctx(t), cc.tone, bytes.NewReader(mediatest.Tone())), "play the tone")
	time.Sleep(300 * time.Millisecond) // the echo of the last packets is on its way back
	cc.stopRecording()
	file := <-cc.recorded
	if file == nil {
		t.Fatal("nothing came back from echo")
	}
	if rep, err := mediatest.CheckTone(file, mediatest.ToneDuration, 500*time.Millisecond); err != nil {
		t.Fatalf("what echo sent back is not the tone: %v (%+v)", err, rep)
	}
}

// TestEchoCallOverFederation: a user of another server invites @echo to
// a room there; echo joins over federation (through the inviting server)
// and answers the call, whose signalling crosses federation both ways.
func TestEchoCallOverFederation(t *testing.T) {
	t.Parallel()
	net := startFedNet(t, "hs1.test", "hs2.test")
	hs1, hs2 := net.Daemons["hs1.test"], net.Daemons["hs2.test"]
	alice := hs1.Register("alice")
	echo := hs2.UserID("echo")
	roomID := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{echo}})
	awaitEcho(t, alice, roomID, echo)
	callEcho(t, alice, roomID, echo)
}

// TestVoicemailCall: alice calls the owner in their 1:1 room; no device
// of the owner answers, so after voicemail_after (2 s here) the owner's
// "Hearth voicemail" device does; alice plays the 3 s test tone and
// hangs up. The voice message appears in the room as the owner's, with
// Element's voice-message shape; its file, downloaded through
// authenticated media, is Ogg/Opus of about 3 s whose decoded signal is
// the tone; the owner gets a desktop notification and the control API's
// status lists the voicemail.
func TestVoicemailCall(t *testing.T) {
	conn, addr := privateBus(t)
	server := make(notificationServer, 32)
	noErr(t, conn.Export(server, "/org/freedesktop/Notifications", "org.freedesktop.Notifications"), "export")
	reply, err := conn.RequestName("org.freedesktop.Notifications", dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own org.freedesktop.Notifications: %v %v", reply, err)
	}
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", addr)
	d := NewDaemon(t, t.TempDir())
	d.Extra = []string{"--voicemail-after", "2"}
	d.Start()
	m := ownerPassword.FindStringSubmatch(d.Logs())
	if m == nil {
		t.Fatalf("no owner password in the welcome text:\n%s", d.Logs())
	}
	owner := d.Client("", "")
	_, err = owner.Login(ctx(t), &mautrix.ReqLogin{Type: mautrix.AuthTypePassword,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "root"}, Password: m[1], StoreCredentials: true})
	noErr(t, err, "owner login")
	devices := must(owner.GetDevicesInfo(ctx(t))).get(t)
	var vmDevice id.DeviceID
	for _, dev := range devices.Devices {
		if dev.DisplayName == "Hearth voicemail" {
			vmDevice = dev.DeviceID
		}
	}
	if vmDevice == "" {
		t.Fatalf("the owner's devices do not list Hearth voicemail: %+v", devices.Devices)
	}
	alice := d.Register("alice")
	noErr(t, alice.SetDisplayName(ctx(t), "Anna"), "display name")
	roomID := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "trusted_private_chat", IsDirect: true, Invite: []id.UserID{owner.UserID}})
	Join(t, owner, roomID)

	cc := newCallCallerWith(t, alice, roomID, true)
	cc.invite()
	ans := cc.takeAnswer()
	if ans.Sender != owner.UserID || ans.Content.Raw["party_id"] != string(vmDevice) {
		t.Fatalf("answer from %s party %v, want the owner's voicemail device %s", ans.Sender, ans.Content.Raw["party_id"], vmDevice)
	}
	waitFor(t, "media connected", func() (bool, bool) {
		return true, cc.pc.ConnectionState() == webrtc.PeerConnectionStateConnected
	})
	noErr(t, media.PlayOgg(ctx(t), cc.tone, bytes.NewReader(mediatest.Tone())), "play the tone")
	cc.hangup()

	var msg *event.Event
	SyncUntil(t, alice, cc.since, "", "the voice message", func(r *mautrix.RespSync) bool {
		if jr := r.Rooms.Join[roomID]; jr != nil {
			for _, ev := range jr.Timeline.Events {
				if ev.Type == event.EventMessage && ev.Sender == owner.UserID {
					msg = ev
					return true
				}
			}
		}
		return false
	})
	raw := msg.Content.Raw
	info, _ := raw["info"].(map[string]any)
	audio, _ := raw["org.matrix.msc1767.audio"].(map[string]any)
	_, voice := raw["org.matrix.msc3245.voice"].(map[string]any)
	body, _ := raw["body"].(string)
	url, _ := raw["url"].(string)
	if raw["msgtype"] != "m.audio" || !voice || audio == nil || info["mimetype"] != "audio/ogg" ||
		!strings.HasPrefix(body, "Voicemail from Anna (0:0") || !strings.HasPrefix(url, "mxc://") {
		t.Fatalf("voice message content: %v", raw)
	}
	if wf, _ := audio["waveform"].([]any); len(wf) == 0 {
		t.Fatalf("no waveform: %v", audio)
	}
	status, file := Raw(t, alice, "GET", "/_matrix/client/v1/media/download/"+strings.TrimPrefix(url, "mxc://"), nil)
	if status != 200 {
		t.Fatalf("download %s: %d %s", url, status, file)
	}
	if size, _ := info["size"].(float64); int(size) != len(file) {
		t.Fatalf("info.size %v, file %d bytes", info["size"], len(file))
	}
	rep, err := mediatest.CheckTone(file, mediatest.ToneDuration, 500*time.Millisecond)
	if err != nil {
		t.Fatalf("the voicemail is not the tone: %v (%+v)", err, rep)
	}
	waitFor(t, "the voicemail notification", func() (bool, bool) {
		select {
		case n := <-server:
			return true, n[0] == "Voicemail from Anna"
		default:
			time.Sleep(20 * time.Millisecond)
			return false, false
		}
	})
	code, out, errOut := runHearth(t, "status", "--json", "--data-dir", d.DataDir, "--client-listen", d.Addr)
	var st struct {
		Voicemail []struct {
			Caller  string `json:"caller"`
			RoomID  string `json:"room_id"`
			EventID string `json:"event_id"`
		} `json:"voicemail"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || len(st.Voicemail) != 1 ||
		st.Voicemail[0].EventID != string(msg.ID) || st.Voicemail[0].RoomID != string(roomID) {
		t.Fatalf("status voicemail list: %d %s %s", code, out, errOut)
	}
}
