package agent

import (
	"context"
	"errors"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/hearth-chat/hearth/calls/media"
)

// echoMedia sends the caller's audio and video back through calls/media's
// Echo: each kind the caller sends gets a local track of the codec the
// caller prefers, fed with the caller's own packets; for video the
// caller's keyframe requests on the echoed track are passed on to the
// caller as PLI for the track it sends (and one is asked for at once), so
// the picture it gets back appears and recovers as fast as its own
// encoder can.
type echoMedia struct {
	max time.Duration
}

func (m *echoMedia) limit() time.Duration { return m.max }

func (m *echoMedia) finished(context.Context, *call) {}

func (m *echoMedia) prepare(ctx context.Context, _ *call, pc *webrtc.PeerConnection, offer string) error {
	offered, err := sendingMedia(offer)
	if err != nil {
		return err
	}
	if len(offered) == 0 {
		return errors.New("the offer sends no audio or video")
	}
	echoes := map[webrtc.RTPCodecType]*media.Echo{}
	for _, om := range offered {
		e, err := media.AddEcho(pc, om.codec)
		if err != nil {
			return err
		}
		echoes[om.kind] = e
	}
	pc.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if e := echoes[remote.Kind()]; e != nil {
			// Ends when the call's context does (the read deadline) or
			// the connection closes.
			e.Run(ctx, remote, uint32(remote.SSRC()), pc, remote.Kind() == webrtc.RTPCodecTypeVideo)
		}
	})
	return nil
}
