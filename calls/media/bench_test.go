package media_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/calls/media"
)

// BenchmarkRecord is the CPU a recording costs: one op records the 3 s
// tone (writing the file and decoding every packet for the waveform).
func BenchmarkRecord(b *testing.B) {
	pkts := toneRTP(b, 0, 0)
	dir := b.TempDir()
	b.ReportAllocs()
	for b.Loop() {
		rec, err := media.Record(context.Background(), &replay{pkts: pkts}, media.RecordOptions{Dir: dir, MaxDuration: time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		_ = os.Remove(rec.Path)
	}
}
