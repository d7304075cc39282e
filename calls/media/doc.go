// Package media is the call agent's media plane: it plays an Ogg/Opus file
// into a WebRTC track (the voicemail greeting), records a caller's Opus RTP
// to an Ogg/Opus file with the duration and waveform a voice message needs,
// forwards RTP back to the sender (the echo test) and checks Ogg/Opus files.
//
// It is "calls/media", not the content repository internal/media: a caller
// that needs both imports this one as callmedia.
//
// What it owns
//
//   - Playback (PlayOgg): reads Ogg/Opus packets (RFC 7845) and writes each
//     as one media.Sample paced at its real duration, taken from the Opus
//     TOC byte (RFC 6716 §3.1), so a 7 s greeting takes 7 s of wall time.
//     DefaultGreeting ships embedded; LoadGreeting validates a replacement.
//   - Recording (Record): reads RTP from a remote Opus track and streams it
//     to an Ogg/Opus file through pion's oggwriter. Time is media time (RTP
//     timestamps at 48 kHz), never wall time: the maximum length, the
//     reported duration and the gap filling all count samples. Lost or
//     silent (DTX) stretches become empty Opus frames that decoders conceal
//     (ffmpeg as silence; libopus lets the sound before fade out over a few
//     tens of milliseconds), so the file keeps the caller's timing;
//     reordered packets are put back in order through a small window;
//     memory stays bounded because packets go to disk as they arrive; one
//     packet per Ogg page (pion's writer) costs about 27% overhead at voice
//     bitrates. RecordOptions.StartAfter
//     drops what arrives before a signal (the end of the greeting).
//     Recording costs about 4–5 ms of CPU per second of audio, decoding
//     for the waveform included (BenchmarkRecord).
//   - The waveform (MSC3246, "org.matrix.msc1767.audio".waveform, used by
//     MSC3245 voice messages): 100 integers 0–1024, each the loudness of one
//     hundredth of the recording, computed from the decoded signal with
//     github.com/pion/opus (a pure-Go decoder of SILK, CELT and hybrid
//     packets, so it covers what browsers send: CELT or hybrid fullband at
//     48 kHz).
//   - Echo (Echo): forwards a remote track's RTP unchanged into a local
//     TrackLocalStaticRTP and relays the local receiver's keyframe requests
//     (RTCP PLI/FIR) to the original sender as a PLI, so video echo starts at
//     once.
//   - Inspection (Inspect, DecodeMono, ToneLevel): validates an Ogg/Opus
//     stream (OpusHead, OpusTags, page CRCs, granule positions) and decodes
//     it, for tests here and elsewhere (see mediatest).
//
// What it must never do: send or read Matrix events, keep media after the
// call except the recording it was asked to write, or block past its
// context.
//
// Why pion: github.com/pion/webrtc/v4 is the pure-Go WebRTC stack the agent
// speaks with; its pkg/media has the Ogg writer, and github.com/pion/opus
// (same project) has the Ogg reader and decoder, so the daemon stays one
// static binary with no cgo and no libopus.
package media
