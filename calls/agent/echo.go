package agent

import (
	"context"
	"errors"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// echoMedia sends the caller's audio and video back: each RTP packet
// received is written to a local track of the same kind and codec. For
// video the caller's keyframe requests (PLI, FIR) on the echoed track are
// passed on to the caller as PLI for the track it sends, so the picture
// it gets back recovers as fast as its own encoder can.
type echoMedia struct {
	max time.Duration
}

func (m *echoMedia) limit() time.Duration { return m.max }

func (m *echoMedia) finished(context.Context, *call) {}

func (m *echoMedia) prepare(_ context.Context, _ *call, pc *webrtc.PeerConnection, offer string) error {
	offered, err := sendingMedia(offer)
	if err != nil {
		return err
	}
	if len(offered) == 0 {
		return errors.New("the offer sends no audio or video")
	}
	tracks := map[webrtc.RTPCodecType]*webrtc.TrackLocalStaticRTP{}
	for _, om := range offered {
		t, err := webrtc.NewTrackLocalStaticRTP(om.codec, om.kind.String(), "hearth-echo")
		if err != nil {
			return err
		}
		sender, err := pc.AddTrack(t)
		if err != nil {
			return err
		}
		tracks[om.kind] = t
		go forwardKeyframeRequests(pc, sender, om.kind)
	}
	pc.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		local := tracks[remote.Kind()]
		if local == nil {
			return
		}
		if remote.Kind() == webrtc.RTPCodecTypeVideo {
			// Ask for a keyframe at once: the echo starts with a picture.
			pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(remote.SSRC())}})
		}
		for {
			pkt, _, err := remote.ReadRTP()
			if err != nil {
				return // the connection closed
			}
			// A write fails only while the sender is not yet bound or
			// already closed; the next packet decides.
			local.WriteRTP(pkt)
		}
	})
	return nil
}

// forwardKeyframeRequests reads the RTCP the caller sends about the
// echoed track (which must be read for the interceptors to work) and
// turns keyframe requests into a PLI for the caller's own video. It ends
// when the connection closes.
func forwardKeyframeRequests(pc *webrtc.PeerConnection, sender *webrtc.RTPSender, kind webrtc.RTPCodecType) {
	for {
		pkts, _, err := sender.ReadRTCP()
		if err != nil {
			return
		}
		if kind != webrtc.RTPCodecTypeVideo {
			continue
		}
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				for _, r := range pc.GetReceivers() {
					if t := r.Track(); t != nil && t.Kind() == webrtc.RTPCodecTypeVideo {
						pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(t.SSRC())}})
					}
				}
			}
		}
	}
}
