// Package mediatest gives tests anywhere in Hearth the call test tone and
// the check that an Ogg/Opus file carries it: the agent's end-to-end test
// sends Tone() as a caller and runs CheckTone on the voicemail it
// downloads. It is imported only by tests, so the tone never ships in the
// daemon.
package mediatest

import (
	"bytes"
	_ "embed"
	"fmt"
	"time"

	"github.com/hearth-chat/hearth/calls/media"
)

//go:embed testdata/tone440.ogg
var tone []byte

// The test tone: a 440 Hz sine at half full scale, 3 s, mono Ogg/Opus
// encoded as a browser would (../README.md has the command).
const (
	ToneFrequency = 440
	ToneDuration  = 3 * time.Second
	toneAmplitude = 0.5
)

// Tone returns the test tone file. The slice is shared: do not modify it.
func Tone() []byte { return tone }

// decodeRate is the rate CheckTone decodes at: enough for a 440 Hz tone and
// its neighbours, and a third of the work of 48 kHz.
const decodeRate = 16000

// otherFrequencies are the probes a tone at ToneFrequency must dominate:
// its octaves, neighbours a semitone or more away, and speech-band
// frequencies.
var otherFrequencies = []float64{220, 330, 392, 494, 550, 660, 880, 1000, 1320}

// ToneReport is what CheckTone measured.
type ToneReport struct {
	Info       media.Info
	Level      float64 // amplitude at ToneFrequency (the tone was made at 0.5)
	OtherLevel float64 // the largest amplitude at otherFrequencies
}

// CheckTone checks that data is valid Ogg/Opus (media.Inspect's checks:
// OpusHead, OpusTags, page CRCs, granule positions, well-formed packets),
// that its playback length is within tolerance of want, and that its
// decoded signal (github.com/pion/opus) is the 440 Hz tone: the amplitude
// at 440 Hz is at least a tenth of the tone's and ten times any of the
// other probe frequencies. The report is returned even when the check
// fails, for the test's message.
func CheckTone(data []byte, want, tolerance time.Duration) (ToneReport, error) {
	pcm, info, err := media.DecodeMono(bytes.NewReader(data), decodeRate)
	if err != nil {
		return ToneReport{}, err
	}
	rep := ToneReport{Info: info, Level: media.ToneLevel(pcm, decodeRate, ToneFrequency)}
	for _, f := range otherFrequencies {
		rep.OtherLevel = max(rep.OtherLevel, media.ToneLevel(pcm, decodeRate, f))
	}
	if d := info.Duration - want; d > tolerance || d < -tolerance {
		return rep, fmt.Errorf("duration %v, want %v ± %v", info.Duration, want, tolerance)
	}
	if rep.Level < toneAmplitude/10 {
		return rep, fmt.Errorf("440 Hz amplitude %.4f, want at least %.4f", rep.Level, toneAmplitude/10)
	}
	if rep.Level < 10*rep.OtherLevel {
		return rep, fmt.Errorf("440 Hz amplitude %.4f is not ten times the other frequencies' %.4f", rep.Level, rep.OtherLevel)
	}
	return rep, nil
}
