package media

import "testing"

func TestLoudnessScale(t *testing.T) {
	for _, c := range []struct {
		meanSquare float64
		want       int
	}{
		{0, 0},
		{1e-7, 0},   // -70 dBFS: below the floor
		{1e-6, 0},   // -60 dBFS: the floor
		{1e-3, 512}, // -30 dBFS: half way
		{1, 1024},   // full scale
		{4, 1024},   // clipped
	} {
		if got := loudness(c.meanSquare); got != c.want {
			t.Errorf("loudness(%g) = %d, want %d", c.meanSquare, got, c.want)
		}
	}
}

// TestWaveformBars: time is split into equal slices whatever the packet
// sizes, and a recording shorter than the number of bars still gives that
// many.
func TestWaveformBars(t *testing.T) {
	var w waveform
	// 1 s loud (60 ms packets), then 1 s of silence (filled), then 1 s at
	// -30 dBFS (2.5 ms packets).
	for range 1000 / 60 {
		w.samples = append(w.samples, 2880)
		w.power = append(w.power, 1)
	}
	w.samples = append(w.samples, 48000-2880*(1000/60))
	w.power = append(w.power, 1)
	w.addSilence(24000)
	w.addSilence(24000)
	for range 400 {
		w.samples = append(w.samples, 120)
		w.power = append(w.power, 1e-3)
	}
	bars := w.bars(WaveformBars)
	if len(bars) != WaveformBars {
		t.Fatalf("%d bars", len(bars))
	}
	for i, v := range bars {
		want := [3]int{1024, 0, 512}[i*3/WaveformBars]
		// The bars at the two boundaries (33 and 66) mix both sides.
		if i == 33 || i == 66 {
			continue
		}
		if v != want {
			t.Errorf("bar %d = %d, want %d: %v", i, v, want, bars)
			break
		}
	}

	var short waveform
	short.samples, short.power = []int32{120}, []float32{1}
	for i, v := range short.bars(WaveformBars) {
		if v != 1024 {
			t.Fatalf("2.5 ms recording: bar %d = %d", i, v)
		}
	}
	var empty waveform
	if b := empty.bars(WaveformBars); len(b) != WaveformBars || b[0] != 0 {
		t.Errorf("empty: %v", b)
	}
}
