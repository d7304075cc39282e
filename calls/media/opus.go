package media

import (
	"errors"
	"fmt"
)

// OpusClockRate is the RTP clock and the Ogg granule rate of Opus: always
// 48 kHz whatever the coded bandwidth (RFC 7587 §4.1, RFC 7845 §4).
const OpusClockRate = 48000

// maxPacketSamples is the longest Opus packet, 120 ms (RFC 6716 §3.2.5).
const maxPacketSamples = OpusClockRate * 120 / 1000

var errBadOpusPacket = errors.New("invalid Opus packet")

// frameSamples is the duration at 48 kHz of one frame of a packet whose TOC
// byte is toc (RFC 6716 §3.1, Table 2).
func frameSamples(toc byte) int {
	config := toc >> 3
	switch {
	case config < 12: // SILK: 10, 20, 40, 60 ms
		return [4]int{480, 960, 1920, 2880}[config&3]
	case config < 16: // hybrid: 10, 20 ms
		return [2]int{480, 960}[config&1]
	default: // CELT: 2.5, 5, 10, 20 ms
		return [4]int{120, 240, 480, 960}[config&3]
	}
}

// packetSamples is the duration at 48 kHz of an Opus packet: its frame
// duration times its frame count (RFC 6716 §3.2). It refuses what §3.4
// calls malformed where the size alone tells: an empty packet, a code 3
// packet without a frame count byte or with zero frames, or more than
// 120 ms.
func packetSamples(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, fmt.Errorf("%w: empty", errBadOpusPacket)
	}
	frames := 1
	switch p[0] & 3 {
	case 1, 2:
		frames = 2
	case 3:
		if len(p) < 2 {
			return 0, fmt.Errorf("%w: code 3 without frame count", errBadOpusPacket)
		}
		frames = int(p[1] & 0x3f)
		if frames == 0 {
			return 0, fmt.Errorf("%w: zero frames", errBadOpusPacket)
		}
	}
	n := frames * frameSamples(p[0])
	if n > maxPacketSamples {
		return 0, fmt.Errorf("%w: %d samples is over 120 ms", errBadOpusPacket, n)
	}
	return n, nil
}

// silentFrame returns a one-byte Opus packet (a TOC byte with a zero-length
// frame) lasting n samples, n one of 120, 240, 480 or 960. RFC 6716 §3.2.1
// lets a frame be empty; decoders treat it as a lost frame and conceal it:
// silence after silence or at the start, otherwise (libopus) a short fade
// of the sound before; ffmpeg's decoder plays silence. The TOC is CELT
// fullband mono (configs 28–31), valid in mono and stereo streams.
func silentFrame(n int) []byte {
	var config byte
	switch n {
	case 120:
		config = 28
	case 240:
		config = 29
	case 480:
		config = 30
	default:
		config = 31
	}
	return []byte{config << 3}
}

// fillSamples splits a gap of n samples into silentFrame lengths, longest
// first; a remainder under 2.5 ms is dropped (it is below what an Opus
// frame can express).
func fillSamples(n int, emit func(frame []byte) error) error {
	for _, size := range [...]int{960, 480, 240, 120} {
		for n >= size {
			if err := emit(silentFrame(size)); err != nil {
				return err
			}
			n -= size
		}
	}
	return nil
}
