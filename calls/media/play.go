package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pion/opus/pkg/oggreader"
	pionmedia "github.com/pion/webrtc/v4/pkg/media"
)

// SampleWriter is where PlayOgg sends audio: a *webrtc.TrackLocalStaticSample
// in a call.
type SampleWriter interface {
	WriteSample(pionmedia.Sample) error
}

// PlayOgg plays an Ogg/Opus stream into w: each audio packet becomes one
// sample whose Duration is the packet's own (from its TOC byte, RFC 6716
// §3.1; the track turns it into RTP timestamps), written at the wall-clock
// moment it is due, so the far end hears it at normal speed. It returns nil
// at the end of the stream, ctx.Err() when ctx is done first, an error
// wrapping ErrNotOggOpus when the stream is not Ogg/Opus (a stream that
// breaks half-way stops there), or the writer's error.
//
// Packets are read as they are played, so a file is never held whole in
// memory by PlayOgg itself.
func PlayOgg(ctx context.Context, w SampleWriter, r io.Reader) error {
	reader, head, err := oggreader.NewWith(r)
	if err != nil {
		return notOgg("reading OpusHead", err)
	}
	if head.Channels < 1 || head.Channels > 2 {
		return notOgg("OpusHead", fmt.Errorf("%d channels (1 or 2 supported)", head.Channels))
	}
	if _, _, err := reader.ParseNextPacket(); err != nil { // OpusTags
		return notOgg("reading OpusTags", err)
	}

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	start := time.Now()
	var elapsed time.Duration // media time of the packets written so far
	for {
		packet, _, err := reader.ParseNextPacket()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return notOgg("audio packet", err)
		}
		n, err := packetSamples(packet)
		if err != nil {
			return notOgg("audio packet", err)
		}
		// Wait until this packet is due: the sum of the durations before
		// it, measured from the start, so pacing errors do not add up.
		if wait := time.Until(start.Add(elapsed)); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-timer.C:
			}
		} else if err := ctx.Err(); err != nil {
			return err
		}
		d := samplesToDuration(int64(n))
		if err := w.WriteSample(pionmedia.Sample{Data: packet, Duration: d}); err != nil {
			return fmt.Errorf("writing audio sample: %w", err)
		}
		elapsed += d
	}
}
