package media_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/calls/media"
	"github.com/hearth-chat/hearth/calls/media/mediatest"
	pionmedia "github.com/pion/webrtc/v4/pkg/media"
)

func TestInspectTone(t *testing.T) {
	info, err := media.Inspect(bytes.NewReader(mediatest.Tone()))
	if err != nil {
		t.Fatal(err)
	}
	if info.Channels != 1 || info.Duration != 3*time.Second || info.Packets != 151 {
		t.Errorf("info %+v, want mono, 3s, 151 packets", info)
	}
	if _, err := mediatest.CheckTone(mediatest.Tone(), mediatest.ToneDuration, time.Millisecond); err != nil {
		t.Errorf("the tone file fails its own check: %v", err)
	}
}

// oggPages returns the byte offsets of the Ogg pages in data.
func oggPages(data []byte) []int {
	var offs []int
	for i := 0; i+27 <= len(data); {
		if !bytes.Equal(data[i:i+4], []byte("OggS")) {
			return offs
		}
		offs = append(offs, i)
		n := 27 + int(data[i+26])
		for _, s := range data[i+27 : i+n] {
			n += int(s)
		}
		i += n
	}
	return offs
}

// oggCRC is the Ogg page checksum (RFC 3533 §6: CRC-32, polynomial
// 0x04c11db7, not reflected, over the page with its CRC field zero).
func oggCRC(page []byte) uint32 {
	var crc uint32
	for i, b := range page {
		if i >= 22 && i < 26 {
			b = 0
		}
		crc ^= uint32(b) << 24
		for range 8 {
			if crc&0x80000000 != 0 {
				crc = crc<<1 ^ 0x04c11db7
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// TestInspectRefusesBrokenFiles: truncated, corrupted or foreign data is
// refused with ErrNotOggOpus, never a panic or a wrong "valid".
func TestInspectRefusesBrokenFiles(t *testing.T) {
	tone := mediatest.Tone()
	pages := oggPages(tone)
	if len(pages) < 5 {
		t.Fatalf("tone has %d pages", len(pages))
	}
	flipped := bytes.Clone(tone)
	flipped[len(flipped)/2] ^= 0x40

	// Granule positions that go back: page 3's is set below page 2's, with
	// a correct CRC so only the granule check can catch it.
	backwards := bytes.Clone(tone)
	p2, p3, p4 := pages[2], pages[3], pages[4]
	binary.LittleEndian.PutUint64(backwards[p3+6:], binary.LittleEndian.Uint64(backwards[p2+6:])-1)
	binary.LittleEndian.PutUint32(backwards[p3+22:], oggCRC(backwards[p3:p4]))

	notOpus := bytes.Clone(tone)
	copy(notOpus[pages[0]+28:], "OpusHeat") // OpusHead's magic, CRC fixed
	binary.LittleEndian.PutUint32(notOpus[pages[0]+22:], oggCRC(notOpus[pages[0]:pages[1]]))

	cases := map[string][]byte{
		"empty":              nil,
		"not ogg":            []byte("RIFF....WAVEfmt this is not an Ogg file at all, not even close"),
		"head only":          tone[:pages[1]],
		"cut in OpusHead":    tone[:20],
		"cut mid-page":       tone[:pages[3]+40],
		"cut in page header": tone[:pages[3]+10],
		"corrupted byte":     flipped,
		"granule backwards":  backwards,
		"not OpusHead":       notOpus,
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			info, err := media.Inspect(bytes.NewReader(data))
			t.Log(err)
			if !errors.Is(err, media.ErrNotOggOpus) {
				t.Errorf("Inspect = %+v, %v; want ErrNotOggOpus", info, err)
			}
			if _, _, err := media.DecodeMono(bytes.NewReader(data), 48000); !errors.Is(err, media.ErrNotOggOpus) {
				t.Errorf("DecodeMono: %v; want ErrNotOggOpus", err)
			}
		})
	}
	// The checksum test is real: the uncorrupted file passes.
	if _, err := media.Inspect(bytes.NewReader(tone)); err != nil {
		t.Fatal(err)
	}
}

func TestLoadGreeting(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.ogg", mediatest.Tone())
	got, err := media.LoadGreeting(good)
	if err != nil || !bytes.Equal(got, mediatest.Tone()) {
		t.Fatalf("LoadGreeting(valid) = %d bytes, %v", len(got), err)
	}
	tone := mediatest.Tone()
	truncated := write("cut.ogg", tone[:len(tone)*2/3])
	if _, err := media.LoadGreeting(truncated); !errors.Is(err, media.ErrNotOggOpus) {
		t.Errorf("truncated file: %v, want ErrNotOggOpus", err)
	}
	big := write("big.ogg", append(bytes.Clone(tone), make([]byte, media.MaxGreetingSize)...))
	if _, err := media.LoadGreeting(big); err == nil {
		t.Error("file over MaxGreetingSize accepted")
	}
	if _, err := media.LoadGreeting(filepath.Join(dir, "missing.ogg")); err == nil {
		t.Error("missing file accepted")
	}
}

// TestDefaultGreeting: the embedded greeting is small valid mono Ogg/Opus
// of a few seconds that decodes to sound, not silence.
func TestDefaultGreeting(t *testing.T) {
	g := media.DefaultGreeting()
	if len(g) > 100<<10 {
		t.Errorf("greeting is %d bytes, want well under 100 KB", len(g))
	}
	pcm, info, err := media.DecodeMono(bytes.NewReader(g), 16000)
	if err != nil {
		t.Fatal(err)
	}
	if info.Channels != 1 || info.Duration < 4*time.Second || info.Duration > 10*time.Second {
		t.Errorf("greeting %+v, want mono, 4–10 s", info)
	}
	var ms float64
	for _, x := range pcm {
		ms += float64(x) * float64(x)
	}
	if rms := math.Sqrt(ms / float64(len(pcm))); rms < 0.01 {
		t.Errorf("greeting RMS %.4f: silent", rms)
	}
	// It ends with the 1 kHz beep: the last half second is mostly 1 kHz.
	tail := pcm[len(pcm)-8000+800 : len(pcm)-800]
	if l := media.ToneLevel(tail, 16000, 1000); l < 0.2 {
		t.Errorf("no beep at the end: 1 kHz level %.3f", l)
	}
}

// samples records what PlayOgg writes.
type samples struct{ got []pionmedia.Sample }

func (s *samples) WriteSample(x pionmedia.Sample) error {
	s.got = append(s.got, x)
	return nil
}

// TestPlayOgg: every packet goes out once, in order, with its own duration
// (the TOC's), so the track's RTP timestamps advance by the stream's
// length.
func TestPlayOgg(t *testing.T) {
	tone := mediatest.Tone()
	pages := oggPages(tone)
	// Only the first pages, to keep the test short (real-time pacing).
	short := tone[:pages[3]]
	info, err := media.Inspect(bytes.NewReader(short))
	if err != nil {
		t.Fatal(err)
	}
	var s samples
	if err := media.PlayOgg(context.Background(), &s, bytes.NewReader(short)); err != nil {
		t.Fatal(err)
	}
	var total time.Duration
	for _, x := range s.got {
		total += x.Duration
		if len(x.Data) == 0 {
			t.Error("empty sample")
		}
	}
	if len(s.got) != info.Packets || total != info.PacketDuration {
		t.Errorf("played %d samples, %v; the file has %d packets, %v", len(s.got), total, info.Packets, info.PacketDuration)
	}
}

// TestPlayOggRefusesBrokenFiles: a truncated file plays up to the break and
// then reports it; a file that is not Ogg/Opus plays nothing.
func TestPlayOggRefusesBrokenFiles(t *testing.T) {
	tone := mediatest.Tone()
	pages := oggPages(tone)
	var s samples
	err := media.PlayOgg(context.Background(), &s, bytes.NewReader(tone[:pages[3]+100]))
	if !errors.Is(err, media.ErrNotOggOpus) {
		t.Errorf("truncated: %v, want ErrNotOggOpus", err)
	}
	full, _ := media.Inspect(bytes.NewReader(tone[:pages[3]]))
	if len(s.got) != full.Packets {
		t.Errorf("played %d packets before the break, want the %d complete ones", len(s.got), full.Packets)
	}
	s.got = nil
	if err := media.PlayOgg(context.Background(), &s, bytes.NewReader([]byte("not ogg"))); !errors.Is(err, media.ErrNotOggOpus) || len(s.got) != 0 {
		t.Errorf("not ogg: %v, %d samples", err, len(s.got))
	}
}

// TestPlayOggStopsOnContext: a done context stops playback before the next
// packet.
func TestPlayOggStopsOnContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var s samples
	if err := media.PlayOgg(ctx, &s, bytes.NewReader(mediatest.Tone())); !errors.Is(err, context.Canceled) {
		t.Errorf("err %v, want context.Canceled", err)
	}
	if len(s.got) != 0 {
		t.Errorf("%d samples written after cancel", len(s.got))
	}
}
