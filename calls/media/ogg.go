package media

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/pion/opus"
	"github.com/pion/opus/pkg/oggreader"
)

// ErrNotOggOpus is wrapped by every error that means "this is not a valid
// Ogg/Opus stream" (as opposed to an I/O error of the reader).
var ErrNotOggOpus = errors.New("not a valid Ogg/Opus stream")

// Info describes a validated Ogg/Opus stream.
type Info struct {
	Channels int // from OpusHead: 1 or 2
	PreSkip  int // samples at 48 kHz the decoder drops at the start (RFC 7845 §4.2)
	Packets  int // audio packets
	// Duration is the playback length the container states: the last
	// granule position minus pre-skip, at 48 kHz (RFC 7845 §4).
	Duration time.Duration
	// PacketDuration is the sum of the audio packets' own durations (from
	// their TOC bytes), pre-skip included: what a sender pacing packets
	// sends.
	PacketDuration time.Duration
}

// Inspect reads a whole Ogg/Opus stream and checks it as RFC 7845 asks: the
// first packet is OpusHead (on a beginning-of-stream page) with 1 or 2
// channels, the second is OpusTags, every page's CRC matches, every audio
// packet is a well-formed Opus packet (RFC 6716 §3), granule positions
// never go back, and none is behind the packets it completes. Errors that
// are about the content wrap ErrNotOggOpus.
func Inspect(r io.Reader) (Info, error) {
	return walkOgg(r, nil)
}

// walkOgg is Inspect that also hands each audio packet (and its duration at
// 48 kHz) to fn, when fn is not nil.
func walkOgg(r io.Reader, fn func(packet []byte, samples int) error) (Info, error) {
	reader, head, err := oggreader.NewWith(r)
	if err != nil {
		return Info{}, notOgg("reading OpusHead", err)
	}
	if head.Channels < 1 || head.Channels > 2 {
		return Info{}, notOgg("OpusHead", fmt.Errorf("%d channels (1 or 2 supported)", head.Channels))
	}
	info := Info{Channels: int(head.Channels), PreSkip: int(head.PreSkip)}

	tags, _, err := reader.ParseNextPacket()
	if err != nil {
		return Info{}, notOgg("reading OpusTags", err)
	}
	if !bytes.HasPrefix(tags, []byte("OpusTags")) || len(tags) < 16 {
		return Info{}, notOgg("second packet", errors.New("not OpusTags"))
	}

	var total, lastGranule uint64
	for {
		packet, page, err := reader.ParseNextPacket()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Info{}, notOgg(fmt.Sprintf("audio packet %d", info.Packets), err)
		}
		n, err := packetSamples(packet)
		if err != nil {
			return Info{}, notOgg(fmt.Sprintf("audio packet %d", info.Packets), err)
		}
		if page.GranulePosition < lastGranule {
			return Info{}, notOgg("granule position", fmt.Errorf("goes back from %d to %d", lastGranule, page.GranulePosition))
		}
		// A page's granule position counts every sample up to its last
		// completed packet; only the final page may trim the end, and never
		// before the start of its last packet (RFC 7845 §4.4).
		if page.GranulePosition < total {
			return Info{}, notOgg("granule position", fmt.Errorf("%d is behind the %d samples before packet %d", page.GranulePosition, total, info.Packets))
		}
		lastGranule = page.GranulePosition
		total += uint64(n)
		info.Packets++
		if fn != nil {
			if err := fn(packet, n); err != nil {
				return Info{}, err
			}
		}
	}
	if info.Packets == 0 {
		return Info{}, notOgg("audio", errors.New("no audio packets"))
	}
	if lastGranule < uint64(info.PreSkip) {
		return Info{}, notOgg("granule position", fmt.Errorf("final %d is less than pre-skip %d", lastGranule, info.PreSkip))
	}
	info.Duration = samplesToDuration(int64(lastGranule) - int64(info.PreSkip))
	info.PacketDuration = samplesToDuration(int64(total))
	return info, nil
}

func notOgg(where string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrNotOggOpus, where, err)
}

func samplesToDuration(n int64) time.Duration {
	return time.Duration(n) * time.Second / OpusClockRate
}

// DecodeMono validates an Ogg/Opus stream like Inspect and decodes it with
// github.com/pion/opus to mono float32 PCM at rate (8000, 12000, 16000,
// 24000 or 48000), pre-skip removed and the end trimmed to the stated
// duration. Empty frames (what Record writes for lost or silent stretches)
// decode as silence. It holds the whole signal in memory: meant for tests
// and short files.
func DecodeMono(r io.Reader, rate int) ([]float32, Info, error) {
	dec, err := opus.NewDecoderWithOutput(rate, 1)
	if err != nil {
		return nil, Info{}, fmt.Errorf("opus decoder at %d Hz: %w", rate, err)
	}
	buf := make([]float32, maxPacketSamples*rate/OpusClockRate)
	var pcm []float32
	info, err := walkOgg(r, func(packet []byte, samples int) error {
		n := samples * rate / OpusClockRate
		if len(packet) == 1 {
			pcm = append(pcm, make([]float32, n)...)
			return nil
		}
		got, err := dec.DecodeToFloat32(packet, buf)
		if err != nil {
			return fmt.Errorf("decoding Opus packet: %w", err)
		}
		pcm = append(pcm, buf[:got]...)
		return nil
	})
	if err != nil {
		return nil, Info{}, err
	}
	skip := min(info.PreSkip*rate/OpusClockRate, len(pcm))
	pcm = pcm[skip:]
	if want := int(info.Duration * time.Duration(rate) / time.Second); want < len(pcm) {
		pcm = pcm[:want]
	}
	return pcm, info, nil
}

// ToneLevel is the amplitude of the frequency component freq (Hz) in pcm
// sampled at rate, by the Goertzel algorithm over the whole signal: a sine
// of amplitude A at freq gives about A, a signal without it about 0.
func ToneLevel(pcm []float32, rate int, freq float64) float64 {
	if len(pcm) == 0 {
		return 0
	}
	coeff := 2 * math.Cos(2*math.Pi*freq/float64(rate))
	var s1, s2 float64
	for _, x := range pcm {
		s0 := float64(x) + coeff*s1 - s2
		s2, s1 = s1, s0
	}
	power := s1*s1 + s2*s2 - coeff*s1*s2
	return 2 * math.Sqrt(math.Max(power, 0)) / float64(len(pcm))
}
