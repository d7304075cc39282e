package media_test

import (
	"bytes"
	"context"
	"github.com/hearth-chat/hearth/calls/media"
	"os"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/calls/media/mediatest"
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
