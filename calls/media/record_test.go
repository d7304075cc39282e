package media_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/calls/media"
	"github.com/hearth-chat/hearth/calls/media/mediatest"
	"github.com/pion/interceptor"
	"github.com/pion/opus/pkg/oggreader"
	"github.com/pion/rtp"
)

// toneRTP returns the test tone's Opus packets as the RTP packets a sender
// makes of them: consecutive sequence numbers from seq and timestamps from
// ts advancing by each packet's 20 ms (960 samples).
func toneRTP(t testing.TB, seq uint16, ts uint32) []*rtp.Packet {
	t.Helper()
	r, _, err := oggreader.NewWith(bytes.NewReader(mediatest.Tone()))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.ParseNextPacket(); err != nil { // OpusTags
		t.Fatal(err)
	}
	var out []*rtp.Packet
	for {
		p, _, err := r.ParseNextPacket()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if p[0]&3 != 0 || p[0]>>3 != 13 && p[0]>>3 != 15 && p[0]>>3 != 27 && p[0]>>3 != 31 {
			t.Fatalf("tone packet TOC %#x: the test assumes 20 ms single-frame packets", p[0])
		}
		out = append(out, &rtp.Packet{
			Header:  rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, Timestamp: ts, SSRC: 42},
			Payload: p,
		})
		seq++
		ts += 960
	}
}

// replay is an RTPReader that hands out packets in the given order, then
// io.EOF.
type replay struct {
	pkts []*rtp.Packet
	i    int
}

func (r *replay) ReadRTP() (*rtp.Packet, interceptor.Attributes, error) {
	if r.i >= len(r.pkts) {
		return nil, nil, io.EOF
	}
	r.i++
	return r.pkts[r.i-1], nil, nil
}

func record(t *testing.T, src media.RTPReader, maxDur time.Duration) (media.Recording, media.Info, []float32) {
	t.Helper()
	rec, err := media.Record(context.Background(), src, media.RecordOptions{Dir: t.TempDir(), MaxDuration: maxDur})
	if err != nil {
		t.Fatalf("Record: %v", err)
	}
	data, err := os.ReadFile(rec.Path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(data)) != rec.Size {
		t.Errorf("Size %d, file has %d", rec.Size, len(data))
	}
	pcm, info, err := media.DecodeMono(bytes.NewReader(data), 16000)
	if err != nil {
		t.Fatalf("recording does not decode: %v", err)
	}
	if d := rec.Duration - info.Duration; d < 0 || d > 3*time.Millisecond {
		t.Errorf("Recording.Duration %v, the file plays %v", rec.Duration, info.Duration)
	}
	return rec, info, pcm
}

// TestRecordStopsAtMaxDuration: 3 s of tone with a 1 s limit gives a 1 s
// file, stopped for that reason, whatever the wall clock did.
func TestRecordStopsAtMaxDuration(t *testing.T) {
	src := &replay{pkts: toneRTP(t, 100, 5000)}
	rec, _, pcm := record(t, src, time.Second)
	if rec.Stopped != media.StopMaxDuration {
		t.Errorf("stopped: %v, want max duration", rec.Stopped)
	}
	if rec.Duration != time.Second {
		t.Errorf("duration %v, want 1s", rec.Duration)
	}
	if rec.Packets != 50 {
		t.Errorf("%d packets written, want 50", rec.Packets)
	}
	if src.i >= len(src.pkts) {
		t.Errorf("Record read all %d packets: it should stop reading at the limit", len(src.pkts))
	}
	if l := media.ToneLevel(pcm, 16000, 440); l < 0.4 {
		t.Errorf("440 Hz level %.3f in the 1 s recording", l)
	}
}

// TestRecordLossReorderDuplicates: a lossy, reordered stream with
// duplicates and a sequence-number wrap still gives a recording of the
// sender's full length, the lost packets filled with silence and counted,
// and it is still the tone.
func TestRecordLossReorderDuplicates(t *testing.T) {
	pkts := toneRTP(t, 65500, 4294967000) // sequence and timestamp wrap mid-way
	n := len(pkts)
	var sent []*rtp.Packet
	lost := 0
	for i := 0; i < n; i++ {
		switch {
		case i > 0 && i < n-1 && i%10 == 0: // 10% loss, not the first or last
			lost++
			continue
		case i%7 == 3 && i+1 < n && (i+1)%10 != 0: // swap with the next one
			sent = append(sent, pkts[i+1], pkts[i])
			i++
			continue
		case i%13 == 5: // duplicate
			sent = append(sent, pkts[i], pkts[i])
			continue
		}
		sent = append(sent, pkts[i])
	}
	rec, info, pcm := record(t, &replay{pkts: sent}, time.Minute)
	if rec.Stopped != media.StopEnded {
		t.Errorf("stopped: %v", rec.Stopped)
	}
	if want := time.Duration(n) * 20 * time.Millisecond; rec.Duration != want {
		t.Errorf("duration %v, want the sender's %v", rec.Duration, want)
	}
	if rec.Lost != lost || rec.Packets != n-lost {
		t.Errorf("lost %d, packets %d; want %d lost of %d", rec.Lost, rec.Packets, lost, n)
	}
	if info.Packets != 4+n {
		t.Errorf("file has %d packets, want %d (4 pre-skip, %d audio or filled)", info.Packets, 4+n, n)
	}
	level, other := media.ToneLevel(pcm, 16000, 440), media.ToneLevel(pcm, 16000, 880)
	if level < 0.3 || level < 10*other {
		t.Errorf("440 Hz level %.3f (880 Hz: %.3f) after 10%% loss", level, other)
	}
}

// TestRecordTimestampGap: a sender that stops sending for a second (DTX, or
// a burst of loss it did not number) is recorded with that second of
// silence, and the waveform shows it.
func TestRecordTimestampGap(t *testing.T) {
	pkts := toneRTP(t, 0, 0)
	for i, p := range pkts[75:] {
		p.Timestamp += 48000 // one second later, numbering continuous
		_ = i
	}
	rec, info, pcm := record(t, &replay{pkts: pkts}, time.Minute)
	if want := time.Duration(len(pkts))*20*time.Millisecond + time.Second; rec.Duration != want {
		t.Errorf("duration %v, want %v", rec.Duration, want)
	}
	if rec.Lost != 0 {
		t.Errorf("lost %d", rec.Lost)
	}
	// Samples 1.5 s to 2.5 s (16 kHz) are the gap.
	gap := pcm[16000*3/2+800 : 16000*5/2-800]
	if l := media.ToneLevel(gap, 16000, 440); l > 0.01 {
		t.Errorf("the gap has a 440 Hz level of %.3f, want silence", l)
	}
	// The waveform's middle quarter (1.5–2.5 s of 4 s) is silent, the rest
	// loud.
	w := rec.Waveform
	for i := 40; i < 60; i++ {
		if w[i] != 0 {
			t.Errorf("waveform bar %d = %d in the silent second: %v", i, w[i], w)
			break
		}
	}
	for _, i := range []int{5, 30, 70, 95} {
		if w[i] < 700 {
			t.Errorf("waveform bar %d = %d in the tone: %v", i, w[i], w)
		}
	}
	t.Logf("file %v", info.Duration)
}

// TestRecordSkipsMalformedPackets: packets that are not Opus (empty, code 3
// with no frame count, over 120 ms) are skipped, not written.
func TestRecordSkipsMalformedPackets(t *testing.T) {
	pkts := toneRTP(t, 10, 10)[:50]
	bad := []*rtp.Packet{
		{Header: rtp.Header{SequenceNumber: 60, Timestamp: 10 + 50*960}, Payload: []byte{0xfb}},       // code 3, no count
		{Header: rtp.Header{SequenceNumber: 61, Timestamp: 10 + 50*960}, Payload: []byte{0xfb, 0x00}}, // zero frames
		{Header: rtp.Header{SequenceNumber: 62, Timestamp: 10 + 50*960}, Payload: []byte{0xfb, 0x3f}}, // 63 × 20 ms
		{Header: rtp.Header{SequenceNumber: 63, Timestamp: 10 + 50*960}},                              // padding only
	}
	src := &replay{pkts: append(append([]*rtp.Packet{}, pkts...), bad...)}
	// Renumber the good ones so the bad ones follow in sequence.
	for i, p := range pkts {
		p.SequenceNumber = uint16(10 + i)
	}
	for i, p := range bad {
		p.SequenceNumber = uint16(60 + i)
	}
	rec, info, _ := record(t, src, time.Minute)
	if rec.Packets != 50 || rec.Duration != time.Second {
		t.Errorf("packets %d, duration %v; want the 50 good ones, 1 s", rec.Packets, rec.Duration)
	}
	if info.Packets != 54 {
		t.Errorf("file has %d packets, want 54", info.Packets)
	}
}

// TestRecordNoAudio: a track that ends before any audio leaves no file and
// says so.
func TestRecordNoAudio(t *testing.T) {
	dir := t.TempDir()
	padding := &rtp.Packet{Header: rtp.Header{SequenceNumber: 1}}
	_, err := media.Record(context.Background(), &replay{pkts: []*rtp.Packet{padding}}, media.RecordOptions{Dir: dir, MaxDuration: time.Second})
	if !errors.Is(err, media.ErrNoAudio) {
		t.Fatalf("err %v, want ErrNoAudio", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("files left: %v", ents)
	}
	if _, err := media.Record(context.Background(), &replay{}, media.RecordOptions{Dir: dir}); err == nil {
		t.Error("no MaxDuration accepted")
	}
}

// blocking is an RTPReader like a live track: ReadRTP hands out packets and
// then blocks until the read deadline is set.
type blocking struct {
	replay
	mu       sync.Mutex
	waiting  chan struct{} // closed when all packets are out and ReadRTP blocks
	deadline chan struct{}
}

func (b *blocking) ReadRTP() (*rtp.Packet, interceptor.Attributes, error) {
	if b.i < len(b.pkts) {
		return b.replay.ReadRTP()
	}
	b.mu.Lock()
	select {
	case <-b.waiting:
	default:
		close(b.waiting)
	}
	b.mu.Unlock()
	<-b.deadline
	return nil, nil, os.ErrDeadlineExceeded
}

func (b *blocking) SetReadDeadline(time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-b.deadline:
	default:
		close(b.deadline)
	}
	return nil
}

// TestRecordCanceled: when the call ends (ctx done) while the track is
// still open, Record unblocks the read, keeps what it has and says why.
func TestRecordCanceled(t *testing.T) {
	src := &blocking{replay: replay{pkts: toneRTP(t, 0, 0)[:25]}, waiting: make(chan struct{}), deadline: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var rec media.Recording
	var err error
	dir := t.TempDir()
	go func() {
		defer close(done)
		rec, err = media.Record(ctx, src, media.RecordOptions{Dir: dir, MaxDuration: time.Minute})
	}()
	<-src.waiting // everything sent, the track is idle, the call ends
	cancel()
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if rec.Stopped != media.StopCanceled || rec.Duration != 500*time.Millisecond {
		t.Errorf("stopped %v after %v; want canceled after 500ms", rec.Stopped, rec.Duration)
	}
	if filepath.Dir(rec.Path) != dir {
		t.Errorf("path %s not in %s", rec.Path, dir)
	}
}

// gated is a replay that closes start after handing out n packets: the
// greeting ends there.
type gated struct {
	replay
	n     int
	start chan struct{}
}

func (g *gated) ReadRTP() (*rtp.Packet, interceptor.Attributes, error) {
	if g.i == g.n {
		close(g.start)
	}
	return g.replay.ReadRTP()
}

// TestRecordStartAfter: what the caller says during the greeting is not
// recorded, and the recording's time starts after it.
func TestRecordStartAfter(t *testing.T) {
	src := &gated{replay: replay{pkts: toneRTP(t, 0, 0)}, n: 100, start: make(chan struct{})}
	rec, err := media.Record(context.Background(), src, media.RecordOptions{Dir: t.TempDir(), MaxDuration: time.Minute, StartAfter: src.start})
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Duration(len(src.pkts)-100) * 20 * time.Millisecond; rec.Duration != want || rec.Packets != len(src.pkts)-100 {
		t.Errorf("recorded %v in %d packets, want %v after the greeting", rec.Duration, rec.Packets, want)
	}
}

// TestRecordLatePacketsAndRestart: one packet arriving far too late is
// dropped without adding time; a sender that restarts its numbering lower
// down is followed, not dropped for ever.
func TestRecordLatePacketsAndRestart(t *testing.T) {
	pkts := toneRTP(t, 1000, 0)
	// Packet 10 arrives after packet 60 (800 ms late: outside the reorder
	// window, so its place was filled with silence and it is dropped).
	var sent []*rtp.Packet
	for i, p := range pkts[:100] {
		if i == 10 {
			continue
		}
		sent = append(sent, p)
		if i == 60 {
			sent = append(sent, pkts[10])
		}
	}
	// Then the sender restarts: sequence numbers 500 lower, timestamps
	// continuing.
	for _, p := range pkts[100:] {
		p.SequenceNumber -= 500
		sent = append(sent, p)
	}
	rec, _, pcm := record(t, &replay{pkts: sent}, time.Minute)
	if want := time.Duration(len(pkts)) * 20 * time.Millisecond; rec.Duration != want {
		t.Errorf("duration %v, want %v", rec.Duration, want)
	}
	if want := len(pkts) - 1 - 16 - 1; rec.Packets < want {
		t.Errorf("%d packets recorded, want at least %d (all but the late one and those that showed the restart)", rec.Packets, want)
	}
	if l := media.ToneLevel(pcm[len(pcm)-8000:], 16000, 440); l < 0.3 {
		t.Errorf("after the restart the 440 Hz level is %.3f", l)
	}
}

// TestRecordStereo: a stereo file when asked (or when the sender's packets
// are stereo), which still decodes.
func TestRecordStereo(t *testing.T) {
	rec, err := media.Record(context.Background(), &replay{pkts: toneRTP(t, 0, 0)}, media.RecordOptions{Dir: t.TempDir(), MaxDuration: time.Minute, Channels: 2})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(rec.Path)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := mediatest.CheckTone(data, mediatest.ToneDuration, 50*time.Millisecond)
	if err != nil || rep.Info.Channels != 2 || rec.Channels != 2 {
		t.Errorf("stereo recording: %+v, %v", rep, err)
	}
}
