package agent

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// newAPI builds the pion API every call's peer connection comes from:
// host candidates only on the addresses the daemon serves (loopback
// included: a client on this computer reaches the agent there), no
// mDNS (it would announce this computer and keep a socket per call),
// the default codecs and interceptors (NACK, RTCP reports).
func newAPI(hostIP func(net.IP) bool) *webrtc.API {
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if hostIP != nil {
		se.SetIPFilter(hostIP)
	}
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		panic(fmt.Sprintf("calls: register codecs: %v", err)) // static tables; cannot fail
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		panic(fmt.Sprintf("calls: register interceptors: %v", err))
	}
	return webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir))
}

// offeredMedia is one m-line of an offer the caller sends on: its kind
// and the codec it prefers (the first payload type listed).
type offeredMedia struct {
	kind  webrtc.RTPCodecType
	codec webrtc.RTPCodecCapability
}

// sendingMedia lists the audio and video sections of an offer in which
// the caller sends (sendrecv or sendonly), at most one of each kind.
func sendingMedia(offer string) ([]offeredMedia, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return nil, fmt.Errorf("offer SDP: %w", err)
	}
	var out []offeredMedia
	seen := map[webrtc.RTPCodecType]bool{}
	for _, md := range sd.MediaDescriptions {
		kind := webrtc.NewRTPCodecType(md.MediaName.Media)
		if kind == 0 || seen[kind] || len(md.MediaName.Formats) == 0 {
			continue
		}
		if _, ok := md.Attribute("recvonly"); ok {
			continue
		}
		if _, ok := md.Attribute("inactive"); ok {
			continue
		}
		pt := md.MediaName.Formats[0]
		var codec webrtc.RTPCodecCapability
		for _, a := range md.Attributes {
			if a.Key != "rtpmap" || !strings.HasPrefix(a.Value, pt+" ") {
				continue
			}
			// "111 opus/48000/2"
			parts := strings.Split(strings.TrimSpace(a.Value[len(pt)+1:]), "/")
			codec.MimeType = md.MediaName.Media + "/" + parts[0]
			if len(parts) > 1 {
				rate, _ := strconv.ParseUint(parts[1], 10, 32)
				codec.ClockRate = uint32(rate)
			}
			if len(parts) > 2 {
				ch, _ := strconv.ParseUint(parts[2], 10, 16)
				codec.Channels = uint16(ch)
			}
		}
		if codec.MimeType == "" {
			continue
		}
		seen[kind] = true
		out = append(out, offeredMedia{kind: kind, codec: codec})
	}
	return out, nil
}
