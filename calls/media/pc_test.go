package media_test

import (
	"context"
	"github.com/hearth-chat/hearth/calls/media"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
)

// loopbackAPI is media.NewAPI restricted to loopback host candidates over UDP:
// two in-process peers reach each other and nothing else.
func loopbackAPI(t *testing.T) *webrtc.API {
	t.Helper()
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	api, err := media.NewAPI(se)
	if err != nil {
		t.Fatal(err)
	}
	return api
}

func newPC(t *testing.T, api *webrtc.API) *webrtc.PeerConnection {
	t.Helper()
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// connected returns a channel closed when pc reaches "connected".
func connected(pc *webrtc.PeerConnection) <-chan struct{} {
	ch := make(chan struct{})
	done := false
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected && !done {
			done = true
			close(ch)
		}
	})
	return ch
}

// negotiate runs offer/answer with full ICE gathering (no trickle), calling
// beforeAnswer on the answerer after it has the offer (where the agent adds
// its tracks), and waits until both sides are connected.
func negotiate(t *testing.T, ctx context.Context, offerer, answerer *webrtc.PeerConnection, beforeAnswer func()) {
	t.Helper()
	c1, c2 := connected(offerer), connected(answerer)
	offer, err := offerer.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(offerer)
	if err := offerer.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	if err := answerer.SetRemoteDescription(*offerer.LocalDescription()); err != nil {
		t.Fatal(err)
	}
	if beforeAnswer != nil {
		beforeAnswer()
	}
	answer, err := answerer.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered = webrtc.GatheringCompletePromise(answerer)
	if err := answerer.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	if err := offerer.SetRemoteDescription(*answerer.LocalDescription()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []<-chan struct{}{c1, c2} {
		select {
		case <-c:
		case <-ctx.Done():
			t.Fatal("peers did not connect over loopback")
		}
	}
}

// testContext bounds a test that waits on network events, so a broken
// connection fails the test instead of hanging it. It is a safety net, not
// a timed assertion.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// drainRTCP reads a sender's RTCP so its interceptors run, until it stops.
func drainRTCP(s *webrtc.RTPSender) {
	go func() {
		for {
			if _, _, err := s.ReadRTCP(); err != nil {
				return
			}
		}
	}()
}
