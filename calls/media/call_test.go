package media_test

import (
	"bytes"
	"context"
	"github.com/hearth-chat/hearth/calls/media"
	"os"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/calls/media/mediatest"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

type recordResult struct {
	rec media.Recording
	err error
}

// recordOnTrack records the first audio track pc receives into dir.
func recordOnTrack(ctx context.Context, pc *webrtc.PeerConnection, dir string) <-chan recordResult {
	out := make(chan recordResult, 1)
	pc.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if remote.Kind() != webrtc.RTPCodecTypeAudio {
			return
		}
		rec, err := media.Record(ctx, remote, media.RecordOptions{Dir: dir, MaxDuration: time.Minute})
		out <- recordResult{rec, err}
	})
	return out
}

// checkToneRecording is what the voicemail flow needs from a recording of
// the test tone sent through WebRTC: valid Ogg/Opus of about 3 s that
// decodes to 440 Hz, a duration that matches the file, and a waveform of
// 100 loud bars.
func checkToneRecording(t *testing.T, res recordResult) {
	t.Helper()
	if res.err != nil {
		t.Fatalf("Record: %v", res.err)
	}
	rec := res.rec
	data, err := os.ReadFile(rec.Path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(data)) != rec.Size {
		t.Errorf("Size %d, file has %d bytes", rec.Size, len(data))
	}
	rep, err := mediatest.CheckTone(data, mediatest.ToneDuration, 150*time.Millisecond)
	t.Logf("recording: %+v; tone check: %+v", rec.Stopped, rep)
	if err != nil {
		t.Fatalf("recording is not the tone: %v", err)
	}
	if d := rec.Duration - rep.Info.Duration; d < 0 || d > 3*time.Millisecond {
		t.Errorf("media.Recording.Duration %v, file plays %v", rec.Duration, rep.Info.Duration)
	}
	if len(rec.Waveform) != media.WaveformBars {
		t.Fatalf("waveform has %d bars", len(rec.Waveform))
	}
	for i, v := range rec.Waveform {
		// The tone is a steady sine at -9 dBFS RMS: 870 on the scale.
		if v < 700 || v > 1024 {
			t.Errorf("waveform bar %d = %d, want a steady loud tone (about 870): %v", i, v, rec.Waveform)
			break
		}
	}
}

// TestPlayRecordTone: one peer plays the test tone file with media.PlayOgg into a
// TrackLocalStaticSample, the other records what arrives with Record; the
// recording is the tone.
func TestPlayRecordTone(t *testing.T) {
	ctx := testContext(t)
	api := loopbackAPI(t)
	caller, callee := newPC(t, api), newPC(t, api)

	tone, err := webrtc.NewTrackLocalStaticSample(media.Opus, "audio", "tone")
	if err != nil {
		t.Fatal(err)
	}
	sender, err := caller.AddTrack(tone)
	if err != nil {
		t.Fatal(err)
	}
	drainRTCP(sender)
	recorded := recordOnTrack(ctx, callee, t.TempDir())
	negotiate(t, ctx, caller, callee, nil)

	if err := media.PlayOgg(ctx, tone, bytes.NewReader(mediatest.Tone())); err != nil {
		t.Fatalf("media.PlayOgg: %v", err)
	}
	// Hanging up ends the callee's remote track: Record returns.
	_ = caller.Close()
	select {
	case res := <-recorded:
		if res.rec.Stopped != media.StopEnded {
			t.Errorf("stopped: %v, want ended", res.rec.Stopped)
		}
		checkToneRecording(t, res)
	case <-ctx.Done():
		t.Fatal("no recording")
	}
}

// TestEchoAudio: the callee echoes the caller's audio with media.AddEcho/Run; the
// caller records what comes back, and it is the tone.
func TestEchoAudio(t *testing.T) {
	ctx := testContext(t)
	api := loopbackAPI(t)
	caller, callee := newPC(t, api), newPC(t, api)

	tone, err := webrtc.NewTrackLocalStaticSample(media.Opus, "audio", "tone")
	if err != nil {
		t.Fatal(err)
	}
	sender, err := caller.AddTrack(tone)
	if err != nil {
		t.Fatal(err)
	}
	drainRTCP(sender)
	recorded := recordOnTrack(ctx, caller, t.TempDir())

	echoDone := make(chan error, 1)
	var echo *media.Echo
	negotiate(t, ctx, caller, callee, func() {
		var err error
		if echo, err = media.AddEcho(callee, media.Opus); err != nil {
			t.Fatal(err)
		}
		callee.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			echoDone <- echo.Run(ctx, remote, uint32(remote.SSRC()), callee, false)
		})
	})

	if err := media.PlayOgg(ctx, tone, bytes.NewReader(mediatest.Tone())); err != nil {
		t.Fatalf("media.PlayOgg: %v", err)
	}
	// The callee hangs up: its remote track ends (Run returns) and so does
	// the caller's track of the echo (Record returns).
	_ = callee.Close()
	select {
	case err := <-echoDone:
		if err != nil {
			t.Errorf("echo: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("echo did not end")
	}
	select {
	case res := <-recorded:
		checkToneRecording(t, res)
	case <-ctx.Done():
		t.Fatal("no recording of the echo")
	}
}

// TestEchoVideoKeyframes: video echo forwards the caller's packets back
// unchanged, asks the caller for a keyframe as soon as it starts, and
// relays the caller's own keyframe request about the echoed track to the
// caller's sender as a PLI for the caller's SSRC.
func TestEchoVideoKeyframes(t *testing.T) {
	ctx := testContext(t)
	api := loopbackAPI(t)
	caller, callee := newPC(t, api), newPC(t, api)

	video, err := webrtc.NewTrackLocalStaticRTP(media.VP8, "video", "cam")
	if err != nil {
		t.Fatal(err)
	}
	sender, err := caller.AddTrack(video)
	if err != nil {
		t.Fatal(err)
	}
	// Keyframe requests reaching the caller's camera.
	plis := make(chan uint32, 16)
	go func() {
		for {
			pkts, _, err := sender.ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				if pli, ok := p.(*rtcp.PictureLossIndication); ok {
					plis <- pli.MediaSSRC
				}
			}
		}
	}()
	// What comes back.
	echoed := make(chan *rtp.Packet, 64)
	echoTrack := make(chan *webrtc.TrackRemote, 1)
	caller.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		echoTrack <- remote
		for {
			p, _, err := remote.ReadRTP()
			if err != nil {
				return
			}
			select {
			case echoed <- p:
			default:
			}
		}
	})
	negotiate(t, ctx, caller, callee, func() {
		echo, err := media.AddEcho(callee, media.VP8)
		if err != nil {
			t.Fatal(err)
		}
		callee.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			_ = echo.Run(ctx, remote, uint32(remote.SSRC()), callee, true)
		})
	})
	callerSSRC := uint32(sender.GetParameters().Encodings[0].SSRC)

	// The caller's "camera" sends numbered packets until the echo of one
	// comes back. The payload is opaque to echo: any bytes do.
	var first *rtp.Packet
	for seq := uint16(1); first == nil; seq++ {
		payload := []byte{0x10, 0, 0, 0, byte(seq >> 8), byte(seq)}
		if err := video.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, Marker: true}, Payload: payload}); err != nil {
			t.Fatal(err)
		}
		select {
		case first = <-echoed:
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("no echo")
		}
	}
	if len(first.Payload) != 6 || first.Payload[0] != 0x10 || uint16(first.Payload[4])<<8|uint16(first.Payload[5]) != first.SequenceNumber {
		t.Errorf("echoed packet %v payload %x: not forwarded unchanged", first.Header, first.Payload)
	}

	waitPLI := func(what string) {
		select {
		case ssrc := <-plis:
			if ssrc != callerSSRC {
				t.Errorf("%s: PLI for SSRC %d, want the caller's %d", what, ssrc, callerSSRC)
			}
		case <-ctx.Done():
			t.Fatalf("%s: no PLI reached the caller's sender", what)
		}
	}
	waitPLI("echo start")
	// The caller's decoder of the echo asks for a keyframe.
	remote := <-echoTrack
	if err := caller.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(remote.SSRC())}}); err != nil {
		t.Fatal(err)
	}
	waitPLI("relayed request")
}

// TestRecordCanceledLiveTrack: the call ends while the caller's track is
// still open (the agent's context is done): Record unblocks the pion track
// through its read deadline and keeps what it has.
func TestRecordCanceledLiveTrack(t *testing.T) {
	ctx := testContext(t)
	api := loopbackAPI(t)
	caller, callee := newPC(t, api), newPC(t, api)
	tone, err := webrtc.NewTrackLocalStaticSample(media.Opus, "audio", "tone")
	if err != nil {
		t.Fatal(err)
	}
	sender, err := caller.AddTrack(tone)
	if err != nil {
		t.Fatal(err)
	}
	drainRTCP(sender)
	recCtx, hangUp := context.WithCancel(ctx)
	recorded := recordOnTrack(recCtx, callee, t.TempDir())
	negotiate(t, ctx, caller, callee, nil)

	// About one second of the tone (its first three pages).
	short := mediatest.Tone()
	short = short[:bytes.Index(short[4000:], []byte("OggS"))+4000]
	info, err := media.Inspect(bytes.NewReader(short))
	if err != nil {
		t.Fatal(err)
	}
	if err := media.PlayOgg(ctx, tone, bytes.NewReader(short)); err != nil {
		t.Fatal(err)
	}
	hangUp() // the caller's connection stays up
	select {
	case res := <-recorded:
		if res.err != nil {
			t.Fatal(res.err)
		}
		if res.rec.Stopped != media.StopCanceled || res.rec.Duration > info.PacketDuration || res.rec.Duration < info.PacketDuration/4 {
			t.Errorf("stopped %v after %v; want canceled, with most of the %v sent", res.rec.Stopped, res.rec.Duration, info.PacketDuration)
		}
	case <-ctx.Done():
		t.Fatal("Record did not return when its context ended")
	}
}
