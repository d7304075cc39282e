package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// RTCPReader is the sending side's RTCP from the far end: a
// *webrtc.RTPSender.
type RTCPReader interface {
	ReadRTCP() ([]rtcp.Packet, interceptor.Attributes, error)
	SetReadDeadline(time.Time) error
}

// RTCPWriter sends RTCP to the far end: a *webrtc.PeerConnection.
type RTCPWriter interface {
	WriteRTCP([]rtcp.Packet) error
}

// RTPWriter is where Echo writes: a *webrtc.TrackLocalStaticRTP.
type RTPWriter interface {
	WriteRTP(*rtp.Packet) error
}

// Echo sends one remote track's media back to its sender.
type Echo struct {
	Local  RTPWriter  // the local track the packets are written to
	Sender RTCPReader // the local track's sender, for keyframe requests
}

// AddEcho adds to pc a local track of codec (Opus or VP8, the codecs NewAPI
// registers) that an Echo writes into. Call it after
// SetRemoteDescription(offer) and before CreateAnswer, once per kind the
// caller sends, so the answer carries the track and no renegotiation is
// needed; then call Run from pc.OnTrack with the remote track of the same
// kind.
func AddEcho(pc *webrtc.PeerConnection, codec webrtc.RTPCodecCapability) (*Echo, error) {
	kind, _, _ := strings.Cut(codec.MimeType, "/") // "audio" or "video"

	track, err := webrtc.NewTrackLocalStaticRTP(codec, kind, "hearth-echo")
	if err != nil {
		return nil, fmt.Errorf("echo %s track: %w", kind, err)
	}
	sender, err := pc.AddTrack(track)
	if err != nil {
		return nil, fmt.Errorf("echo %s track: %w", kind, err)
	}
	return &Echo{Local: track, Sender: sender}, nil
}

// keyframeInterval bounds how often Run asks the sender for a keyframe when
// the receiving side keeps asking.
const keyframeInterval = 200 * time.Millisecond

// Run forwards RTP from src (the remote track, whose SSRC is remoteSSRC)
// into e.Local until src ends or ctx is done, and meanwhile relays every
// keyframe request the far end sends about e.Local (RTCP PLI or FIR, RFC
// 4585 §6.3.1, RFC 5104 §4.3.1) to the original sender as a PLI through
// keyframes, so a decoder that joins or loses packets gets a keyframe from
// the source. For video (video true) it asks for one keyframe at the start
// as well, so the echo shows a picture at once.
//
// Packets keep their sequence numbers, timestamps and payload; the local
// track sets its own SSRC and payload type. Header extensions are dropped:
// their IDs and meaning (transport-wide sequence numbers, audio levels)
// belong to the incoming direction. Padding-only packets (bandwidth probes)
// are not forwarded. It returns nil when src ends or ctx is done, or the
// local track's write error.
func (e *Echo) Run(ctx context.Context, src RTPReader, remoteSSRC uint32, keyframes RTCPWriter, video bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if d, ok := src.(readDeadliner); ok {
		stop := context.AfterFunc(ctx, func() { _ = d.SetReadDeadline(time.Now()) })
		defer stop()
	}

	var wg sync.WaitGroup
	if e.Sender != nil {
		stop := context.AfterFunc(ctx, func() { _ = e.Sender.SetReadDeadline(time.Now()) })
		defer stop()
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.relayKeyframeRequests(ctx, remoteSSRC, keyframes)
		}()
	}
	defer wg.Wait()
	defer cancel() // runs before wg.Wait: ends the relay loop

	if video && keyframes != nil {
		_ = keyframes.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: remoteSSRC}})
	}
	badReads := 0
	for {
		pkt, _, err := src.ReadRTP()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) {
				return nil
			}
			// One packet that did not parse; a source that only fails is
			// treated as ended.
			if badReads++; badReads > 100 {
				return nil
			}
			continue
		}
		badReads = 0
		if len(pkt.Payload) == 0 {
			continue
		}
		pkt.Header.Extension = false
		pkt.Header.Extensions = nil
		pkt.Header.ExtensionProfile = 0
		if err := e.Local.WriteRTP(pkt); err != nil {
			if errors.Is(err, io.ErrClosedPipe) {
				return nil // the local track was removed: the call is over
			}
			return fmt.Errorf("echo: writing RTP: %w", err)
		}
	}
}

// relayKeyframeRequests reads the local sender's RTCP until it ends (the
// sender stops or ctx sets its read deadline) and turns keyframe requests
// into PLIs for remoteSSRC, at most one per keyframeInterval.
func (e *Echo) relayKeyframeRequests(ctx context.Context, remoteSSRC uint32, keyframes RTCPWriter) {
	var last time.Time
	badReads := 0
	for {
		pkts, _, err := e.Sender.ReadRTCP()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) {
				return
			}
			if badReads++; badReads > 100 {
				return
			}
			continue
		}
		badReads = 0
		if keyframes == nil {
			continue // reading still drives the sender's interceptors
		}
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				if time.Since(last) < keyframeInterval {
					continue
				}
				last = time.Now()
				_ = keyframes.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: remoteSSRC}})
			}
		}
	}
}
