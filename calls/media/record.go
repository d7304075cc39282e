package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4/pkg/media/oggwriter"
)

// RTPReader is a source of RTP packets: a *webrtc.TrackRemote in a call, or
// anything that replays packets in a test. ReadRTP returns io.EOF (or an
// error wrapping it) when the source ends.
type RTPReader interface {
	ReadRTP() (*rtp.Packet, interceptor.Attributes, error)
}

// readDeadliner is what lets Record and Echo stop a blocked ReadRTP when
// their context is done (*webrtc.TrackRemote has it).
type readDeadliner interface {
	SetReadDeadline(time.Time) error
}

// ErrNoAudio is returned by Record when the source ended (or ctx was done)
// before any Opus packet arrived; no file is left behind.
var ErrNoAudio = errors.New("no audio received")

// RecordOptions says where and how long Record records.
type RecordOptions struct {
	// Dir is the existing directory the file is created in, with a unique
	// name "voicemail-*.ogg" and mode 0600.
	Dir string
	// MaxDuration is the longest recording, in media time (RTP timestamps),
	// not wall time. Required: zero or less is an error.
	MaxDuration time.Duration
	// StartAfter, when not nil, delays the recording until it is closed:
	// packets that arrive before are read and dropped (so nothing old is
	// buffered), and the recording's time starts at the first packet after.
	// The voicemail flow closes it when the greeting has played, so the
	// message starts after the tone.
	StartAfter <-chan struct{}
	// Channels forces a mono (1) or stereo (2) file; 0 takes the stereo flag
	// of the first packet's TOC byte (RFC 6716 §3.1): WebRTC always
	// negotiates "opus/48000/2", so the packets, not the SDP, say what the
	// sender encodes.
	Channels int
}

// StopReason says why Record stopped.
type StopReason int

const (
	// StopEnded: the source ended (the remote track closed, io.EOF).
	StopEnded StopReason = iota + 1
	// StopMaxDuration: the recording reached RecordOptions.MaxDuration.
	StopMaxDuration
	// StopCanceled: ctx was done (the call ended first).
	StopCanceled
)

func (r StopReason) String() string {
	switch r {
	case StopEnded:
		return "ended"
	case StopMaxDuration:
		return "max duration"
	case StopCanceled:
		return "canceled"
	}
	return fmt.Sprintf("StopReason(%d)", int(r))
}

// Recording is what Record wrote.
type Recording struct {
	Path string // the Ogg/Opus file, in RecordOptions.Dir
	Size int64  // bytes
	// Duration is media time from the first packet's RTP timestamp to the
	// end of the last packet, lost and silent stretches included; silence
	// before the first packet is not part of it. It equals the file's
	// playback length (Info.Duration) to within a 2.5 ms remainder.
	Duration time.Duration
	// Waveform is MSC3246's "org.matrix.msc1767.audio".waveform: WaveformBars
	// integers 0–1024, the loudness of each equal slice of the recording
	// (see waveform.go for the scale).
	Waveform []int
	Channels int        // of the file: 1 or 2
	Packets  int        // audio packets received and written
	Lost     int        // packets missing by sequence number, filled with silence
	Stopped  StopReason // why recording stopped
}

// DurationMS is Duration in whole milliseconds, the unit of "duration" in
// m.audio's info and in "org.matrix.msc1767.audio".
func (r Recording) DurationMS() int64 { return r.Duration.Milliseconds() }

// reorderWindow is how many packets Record holds to put reordered packets
// back in sequence: 16 packets of 20 ms, about 320 ms of jitter.
const reorderWindow = 16

// discontinuity is a sequence-number jump beyond which Record takes the
// stream as restarted (a new sender state) rather than lossy: it neither
// fills the gap nor drops the packets as late. A run of more than
// reorderWindow late packets in a row means the same (a restart to a lower
// sequence number).
const discontinuity = 1000

// maxRestartGap is the largest timestamp step (10 s at 48 kHz) across a
// restart that Record still takes as elapsed time rather than a new clock.
const maxRestartGap = 10 * OpusClockRate

// Record reads Opus RTP from src and writes it to a new Ogg/Opus file (48
// kHz, RFC 7845, through pion's oggwriter) until the source ends, ctx is
// done or MaxDuration of media is recorded, then closes the file and
// returns what it wrote. Stopping is not an error: Recording.Stopped says
// why. It returns ErrNoAudio (and leaves no file) if no audio arrived, and
// on any write error removes the partial file.
//
// Packets are written as they arrive (after a reorder window of
// reorderWindow packets), so memory does not grow with the length except
// for the waveform's per-packet loudness (8 bytes a packet). Sequence gaps
// and timestamp jumps (loss, DTX) are filled with empty Opus frames so the
// file keeps real time; late duplicates are dropped; malformed Opus
// packets are skipped.
//
// When ctx is done Record unblocks ReadRTP through SetReadDeadline if src
// has it (a *webrtc.TrackRemote does, and its deadline is left set); a src
// without it must end by itself.
func Record(ctx context.Context, src RTPReader, opts RecordOptions) (Recording, error) {
	if opts.MaxDuration <= 0 {
		return Recording{}, errors.New("record: MaxDuration must be positive")
	}
	if opts.Channels < 0 || opts.Channels > 2 {
		return Recording{}, fmt.Errorf("record: %d channels (0, 1 or 2)", opts.Channels)
	}
	if d, ok := src.(readDeadliner); ok {
		stop := context.AfterFunc(ctx, func() { _ = d.SetReadDeadline(time.Now()) })
		defer stop()
	}

	// In samples, through microseconds so a long limit cannot overflow.
	rec := &recorder{opts: opts, max: opts.MaxDuration.Microseconds() * OpusClockRate / 1e6}
	defer rec.abort() // removes the file unless finish succeeded
	rec.pending = make(map[uint16]*rtp.Packet, reorderWindow+1)
	reason := StopEnded
	badReads := 0
	for !rec.full {
		pkt, _, err := src.ReadRTP()
		if err != nil {
			if ctx.Err() != nil {
				reason = StopCanceled
				break
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) {
				break
			}
			// A packet that did not parse; a source that only fails is
			// treated as ended.
			if badReads++; badReads > 100 {
				break
			}
			continue
		}
		badReads = 0
		if opts.StartAfter != nil {
			select {
			case <-opts.StartAfter:
				opts.StartAfter = nil
			default:
				continue // still in the greeting
			}
		}
		if err := rec.receive(pkt); err != nil {
			return Recording{}, err
		}
		if ctx.Err() != nil && !rec.full {
			reason = StopCanceled
			break
		}
	}
	if err := rec.flush(); err != nil {
		return Recording{}, err
	}
	if rec.full {
		reason = StopMaxDuration
	}
	return rec.finish(reason)
}

// recorder is one Record call's state.
type recorder struct {
	opts RecordOptions
	max  int64 // MaxDuration in samples

	file   *os.File
	writer *oggwriter.Writer
	track  *oggwriter.Track
	ssrc   uint32
	chans  int

	started  bool
	late     int    // packets in a row that came after their place was filled
	next     uint16 // the sequence number written next
	pending  map[uint16]*rtp.Packet
	expectTS uint32 // RTP timestamp where the last written packet ended
	pos      int64  // samples written, pre-skip padding excluded
	full     bool

	packets, lost int
	wave          waveform
}

// receive takes one packet in arrival order and writes what is now in
// sequence.
func (r *recorder) receive(pkt *rtp.Packet) error {
	if !r.started {
		if len(pkt.Payload) == 0 {
			return nil // padding before any audio
		}
		r.started = true
		r.next = pkt.SequenceNumber
		r.expectTS = pkt.Timestamp
	}
	diff := int16(pkt.SequenceNumber - r.next)
	if diff < 0 {
		r.late++
	} else {
		r.late = 0
	}
	switch {
	case diff < -discontinuity || diff > discontinuity || r.late > reorderWindow:
		// The sender restarted its sequence: write what is held, then
		// continue from this packet without filling a gap.
		if err := r.flush(); err != nil {
			return err
		}
		r.next = pkt.SequenceNumber
		r.late = 0
		// Keep the timing if the timestamps still run on (a renumbered
		// stream): the packets dropped while the restart showed become
		// silence. Otherwise start the clock again from this packet.
		if gap := int32(pkt.Timestamp - r.expectTS); gap < 0 || gap > maxRestartGap {
			r.expectTS = pkt.Timestamp
		}
	case diff < 0:
		return nil // late or duplicate: its place was already filled
	}
	if _, dup := r.pending[pkt.SequenceNumber]; dup {
		return nil
	}
	r.pending[pkt.SequenceNumber] = pkt
	return r.drain(false)
}

// drain writes the packets that are next in sequence; when more than
// reorderWindow are held (or all is set), it gives up on the missing ones
// and skips ahead to the oldest held packet.
func (r *recorder) drain(all bool) error {
	for len(r.pending) > 0 && !r.full {
		if pkt, ok := r.pending[r.next]; ok {
			delete(r.pending, r.next)
			r.next++
			if err := r.write(pkt); err != nil {
				return err
			}
			continue
		}
		if !all && len(r.pending) <= reorderWindow {
			return nil
		}
		oldest := int16(discontinuity + 1)
		for seq := range r.pending {
			oldest = min(oldest, int16(seq-r.next))
		}
		r.lost += int(oldest)
		r.next += uint16(oldest)
	}
	return nil
}

func (r *recorder) flush() error { return r.drain(true) }

// write appends one in-sequence packet to the file, after filling the time
// since the previous packet's end with silence.
func (r *recorder) write(pkt *rtp.Packet) error {
	if len(pkt.Payload) == 0 {
		return nil // RTP padding only
	}
	n, err := packetSamples(pkt.Payload)
	if err != nil {
		return nil // not Opus: skip, as a decoder would
	}
	if r.file == nil {
		if err := r.create(pkt); err != nil {
			return err
		}
	}
	if gap := int64(int32(pkt.Timestamp - r.expectTS)); gap > 0 {
		fill := min(gap, r.max-r.pos)
		if err := r.fill(fill); err != nil {
			return err
		}
		if fill < gap {
			r.full = true
			return nil
		}
	}
	if r.pos+int64(n) > r.max {
		r.full = true
		return nil
	}
	if err := r.writePayload(pkt.Payload); err != nil {
		return err
	}
	r.wave.add(pkt.Payload, n)
	r.pos += int64(n)
	r.expectTS = pkt.Timestamp + uint32(n)
	r.packets++
	if r.pos == r.max {
		r.full = true
	}
	return nil
}

// fill writes n samples of silence (empty frames), counted in pos and in
// the waveform as zero loudness.
func (r *recorder) fill(n int64) error {
	return fillSamples(int(n), func(frame []byte) error {
		samples := frameSamples(frame[0])
		r.pos += int64(samples)
		r.wave.addSilence(samples)
		return r.writePayload(frame)
	})
}

// preSkip is the pre-skip pion's oggwriter puts in OpusHead (the 80 ms RFC
// 7845 §4.2 recommends). A WebRTC sender's stream has no encoder priming to
// skip, so create writes that much silence first: players drop it, not the
// caller's first words.
const preSkip = 3840

func (r *recorder) create(first *rtp.Packet) error {
	r.chans = r.opts.Channels
	if r.chans == 0 {
		r.chans = 1
		if first.Payload[0]&0x04 != 0 {
			r.chans = 2
		}
	}
	f, err := os.CreateTemp(r.opts.Dir, "voicemail-*.ogg")
	if err != nil {
		return fmt.Errorf("record: creating file: %w", err)
	}
	r.file = f
	w, err := oggwriter.NewWriter(f,
		oggwriter.WithSampleRate(OpusClockRate),
		oggwriter.WithChannelCount(uint16(r.chans)),
		oggwriter.WithSeekableOutput(f),
		oggwriter.WithVendor("Hearth"))
	if err != nil {
		return fmt.Errorf("record: ogg writer: %w", err)
	}
	r.writer = w
	r.ssrc = 1
	if r.track, err = w.NewTrack(r.ssrc); err != nil {
		return fmt.Errorf("record: ogg track: %w", err)
	}
	return fillSamples(preSkip, r.writePayload)
}

func (r *recorder) writePayload(p []byte) error {
	err := r.track.WriteRTP(&rtp.Packet{Header: rtp.Header{SSRC: r.ssrc}, Payload: p})
	if err != nil {
		return fmt.Errorf("record: writing %s: %w", r.file.Name(), err)
	}
	return nil
}

// finish closes the file and describes it; the file is kept only if this
// succeeds.
func (r *recorder) finish(reason StopReason) (Recording, error) {
	if r.file == nil || r.packets == 0 {
		return Recording{}, ErrNoAudio
	}
	path := r.file.Name()
	// The writer closes the file too (after marking the last page end of
	// stream).
	err := r.writer.Close()
	r.writer = nil
	if err != nil {
		return Recording{}, fmt.Errorf("record: closing %s: %w", path, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return Recording{}, fmt.Errorf("record: %w", err)
	}
	r.file = nil // keep it
	return Recording{
		Path:     path,
		Size:     st.Size(),
		Duration: samplesToDuration(r.pos),
		Waveform: r.wave.bars(WaveformBars),
		Channels: r.chans,
		Packets:  r.packets,
		Lost:     r.lost,
		Stopped:  reason,
	}, nil
}

// abort removes a file that finish did not keep.
func (r *recorder) abort() {
	if r.file == nil {
		return
	}
	if r.writer != nil {
		_ = r.writer.Close()
	}
	_ = r.file.Close()
	_ = os.Remove(r.file.Name())
}
