package media

import (
	"math"

	"github.com/pion/opus"
)

// WaveformBars is how many values Record puts in a waveform: MSC3246 asks
// for 30 to 120, and Element draws about 100 bars.
const WaveformBars = 100

// waveformFloorDB is the loudness drawn as 0: -60 dBFS RMS is below a quiet
// room through a browser's noise suppression; 0 dBFS is drawn as 1024.
const waveformFloorDB = -60

// waveform keeps the loudness of each written packet, from the decoded
// signal: pion/opus decodes every Opus mode (SILK, hybrid, CELT), so this is
// the signal's real RMS, not an estimate from packet sizes.
type waveform struct {
	dec     opus.Decoder
	ready   bool
	buf     []float32
	samples []int32   // per packet, at 48 kHz
	power   []float32 // per packet: mean square of the decoded signal
}

// add decodes one packet and records its loudness. A packet the decoder
// refuses counts as silence (the recording itself keeps it).
func (w *waveform) add(packet []byte, samples int) {
	if !w.ready {
		dec, err := opus.NewDecoderWithOutput(OpusClockRate, 1)
		if err == nil {
			w.dec, w.ready = dec, true
			w.buf = make([]float32, maxPacketSamples)
		}
	}
	var ms float64
	if w.ready {
		if n, err := w.dec.DecodeToFloat32(packet, w.buf); err == nil && n > 0 {
			for _, x := range w.buf[:n] {
				ms += float64(x) * float64(x)
			}
			ms /= float64(n)
		}
	}
	w.samples = append(w.samples, int32(samples))
	w.power = append(w.power, float32(ms))
}

func (w *waveform) addSilence(samples int) {
	if k := len(w.samples) - 1; k >= 0 && w.power[k] == 0 {
		w.samples[k] += int32(samples) // merge runs of silence
		return
	}
	w.samples = append(w.samples, int32(samples))
	w.power = append(w.power, 0)
}

// bars splits the recorded time into n equal slices and returns each
// slice's RMS loudness on MSC3246's 0–1024 scale: linear in decibels from
// waveformFloorDB (0) to full scale (1024), the way a level meter reads.
func (w *waveform) bars(n int) []int {
	var total int64
	for _, s := range w.samples {
		total += int64(s)
	}
	out := make([]int, n)
	if total == 0 {
		return out
	}
	// Slice b covers samples [b·total/n, (b+1)·total/n). Each packet's
	// power is spread over the slices it overlaps, weighted by overlap.
	sliceEnd := func(b int) int64 { return (int64(b) + 1) * total / int64(n) }
	energy := make([]float64, n)
	b := 0
	var pos int64
	for i, s := range w.samples {
		start, end := pos, pos+int64(s)
		pos = end
		for start < end {
			for b < n-1 && sliceEnd(b) <= start {
				b++
			}
			part := min(end, sliceEnd(b)) - start
			energy[b] += float64(w.power[i]) * float64(part)
			start += part
		}
	}
	// A recording shorter than n samples has empty slices: they take the
	// value of the nearest slice before them (or after, at the start).
	firstFull := -1
	for b := range out {
		sliceLen := sliceEnd(b) - int64(b)*total/int64(n)
		switch {
		case sliceLen > 0:
			out[b] = loudness(energy[b] / float64(sliceLen))
			if firstFull < 0 {
				firstFull = b
			}
		case b > 0:
			out[b] = out[b-1]
		}
	}
	for b := 0; b < firstFull; b++ {
		out[b] = out[firstFull]
	}
	return out
}

// loudness maps a mean square to 0–1024.
func loudness(meanSquare float64) int {
	if meanSquare <= 0 {
		return 0
	}
	db := 10 * math.Log10(meanSquare)
	v := (db - waveformFloorDB) / -waveformFloorDB
	return int(math.Round(math.Max(0, math.Min(1, v)) * 1024))
}
