package agent

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/hearth-chat/hearth/internal/room"
)

// TestEchoAnswersAndEchoes: echo, in a room with the caller, answers an
// invite as its own device and sends the caller's audio back; after the
// caller hangs up nothing of the call is left.
func TestEchoAnswersAndEchoes(t *testing.T) {
	e := newEnv(t, Config{})
	alice := user("alice")
	roomID := e.room(alice, echo.UserID)
	e.agent.Start()
	base := runtime.NumGoroutine() // the agent's follower included
	c := newCaller(e, alice, roomID)
	c.invite(nil)
	ans := c.awaitAnswer(10 * time.Second)
	if ans.PartyID != echo.DeviceID {
		t.Fatalf("answer party_id %q, want echo's device %q", ans.PartyID, echo.DeviceID)
	}
	c.sendAndExpectEcho(10 * time.Second)
	c.hangup()
	c.pc.GracefulClose()
	settle(t, e.agent, base)
}

// TestEchoVideoAndKeyframes: echo sends video back too, asks the caller
// for a keyframe as soon as its video arrives, and passes the caller's
// own keyframe request on the echoed video back to the caller as a PLI.
func TestEchoVideoAndKeyframes(t *testing.T) {
	e := newEnv(t, Config{})
	alice := user("alice")
	roomID := e.room(alice, echo.UserID)
	e.agent.Start()
	c := newCaller(e, alice, roomID)
	video, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "caller")
	if err != nil {
		t.Fatal(err)
	}
	sender, err := c.pc.AddTrack(video)
	if err != nil {
		t.Fatal(err)
	}
	plis := make(chan struct{}, 16)
	go func() {
		for {
			pkts, _, err := sender.ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				if _, ok := p.(*rtcp.PictureLossIndication); ok {
					select {
					case plis <- struct{}{}:
					default:
					}
				}
			}
		}
	}()
	gotVideo := make(chan *webrtc.TrackRemote, 1)
	c.pc.OnTrack(func(tr *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
		if tr.Kind() != webrtc.RTPCodecTypeVideo {
			return
		}
		gotVideo <- tr
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
		}
	})
	c.invite(nil)
	c.awaitAnswer(10 * time.Second)
	waitConnected(t, c.pc)
	var remote *webrtc.TrackRemote
	deadline := time.After(10 * time.Second)
	for n := 0; remote == nil; n++ {
		video.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(n),
			Timestamp: uint32(n * 3000), SSRC: 777, Marker: true}, Payload: []byte{0x10, 0x00, 0x00, byte(n)}})
		select {
		case remote = <-gotVideo:
		case <-deadline:
			t.Fatal("no video came back from echo")
		case <-time.After(20 * time.Millisecond):
		}
	}
	select {
	case <-plis: // echo's own request when the video started
	case <-time.After(10 * time.Second):
		t.Fatal("echo asked for no keyframe when the video started")
	}
	for len(plis) > 0 {
		<-plis
	}
	// The caller, as the viewer of the echoed video, asks for a keyframe.
	if err := c.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(remote.SSRC())}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-plis:
	case <-time.After(10 * time.Second):
		t.Fatal("the caller's keyframe request was not passed back to it")
	}
	c.hangup()
}

// TestEchoJoinsWhenInvited: an invite to echo in a local room makes it
// join, and it says what it is for.
func TestEchoJoinsWhenInvited(t *testing.T) {
	e := newEnv(t, Config{})
	alice := user("alice")
	roomID := e.room(alice)
	e.agent.Start()
	pos, _ := e.rooms.Pos()
	if _, err := e.rooms.ChangeMembership(context.Background(), room.MembershipRequest{Sender: alice, RoomID: roomID,
		Target: echo.UserID, Membership: "invite"}); err != nil {
		t.Fatal(err)
	}
	e.waitFor(&pos, 10*time.Second, "echo's join", func(ev *room.ClientEvent) bool {
		return ev.Type == "m.room.member" && ev.StateKey != nil && *ev.StateKey == echo.UserID &&
			strings.Contains(string(ev.Content), `"join"`)
	})
	hello := e.waitFor(&pos, 10*time.Second, "echo's hello", func(ev *room.ClientEvent) bool {
		return ev.Type == "m.room.message" && ev.Sender == echo.UserID
	})
	if !strings.Contains(string(hello.Content), "m.notice") {
		t.Fatalf("hello %s", hello.Content)
	}
}
