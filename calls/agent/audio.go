package agent

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/hearth-chat/hearth/calls/media"
)

// MediaAudio is voicemail's Audio through calls/media: Greeting is the
// Ogg/Opus greeting (media.DefaultGreeting or a file media.LoadGreeting
// accepted) and Dir the directory recordings are written to while they
// are made; each is read and removed once it ends.
type MediaAudio struct {
	Greeting []byte
	Dir      string
}

func (m MediaAudio) PlayGreeting(ctx context.Context, track *webrtc.TrackLocalStaticSample) error {
	return media.PlayOgg(ctx, track, bytes.NewReader(m.Greeting))
}

func (m MediaAudio) Record(ctx context.Context, src *webrtc.TrackRemote, max time.Duration) (*Recorded, error) {
	rec, err := media.Record(ctx, src, media.RecordOptions{Dir: m.Dir, MaxDuration: max})
	if err != nil {
		return nil, err
	}
	defer os.Remove(rec.Path)
	file, err := os.ReadFile(rec.Path)
	if err != nil {
		return nil, fmt.Errorf("read recording: %w", err)
	}
	return &Recorded{File: file, Duration: rec.Duration, Waveform: rec.Waveform}, nil
}
