package media

import (
	"fmt"

	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// Opus is the audio codec the agent offers and answers with: Opus at 48
// kHz, signalled as two channels as RFC 7587 §7 requires, with in-band FEC
// (the fmtp browsers use).
var Opus = webrtc.RTPCodecCapability{
	MimeType:    webrtc.MimeTypeOpus,
	ClockRate:   OpusClockRate,
	Channels:    2,
	SDPFmtpLine: "minptime=10;useinbandfec=1",
}

// VP8 is the one video codec the agent answers with (every browser sends
// it), with the feedback echo needs: NACK, PLI and FIR keyframe requests,
// and REMB/transport-cc for bandwidth.
var VP8 = webrtc.RTPCodecCapability{
	MimeType:  webrtc.MimeTypeVP8,
	ClockRate: 90000,
	RTCPFeedback: []webrtc.RTCPFeedback{
		{Type: "goog-remb"}, {Type: "transport-cc"}, {Type: "ccm", Parameter: "fir"},
		{Type: "nack"}, {Type: "nack", Parameter: "pli"},
	},
}

// NewAPI returns a pion API whose MediaEngine has exactly one codec per kind
// (Opus, VP8) and pion's default interceptors (NACK, RTCP reports, TWCC),
// with se's settings (ICE ports, TURN-only, loopback...). One codec per
// kind pins what a caller sends in answer to our SDP, so Echo can forward
// packets unchanged and Record always gets Opus.
func NewAPI(se webrtc.SettingEngine) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: Opus, PayloadType: 111}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, fmt.Errorf("registering Opus: %w", err)
	}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: VP8, PayloadType: 96}, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, fmt.Errorf("registering VP8: %w", err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, fmt.Errorf("registering interceptors: %w", err)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}
