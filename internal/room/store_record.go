package room

import (
	"encoding/binary"
	"errors"
)

// The room engine's store records (events, room info, snapshots) are
// binary: fixed-width big-endian integers and strings with a 16-bit length
// prefix. They are read on every send and every sync, where JSON decoding
// was a measurable cost.

var errCorrupt = errors.New("room: corrupt record")

type recordWriter struct{ b []byte }

func (w *recordWriter) u64(v uint64) { w.b = binary.BigEndian.AppendUint64(w.b, v) }
func (w *recordWriter) u32(v uint32) { w.b = binary.BigEndian.AppendUint32(w.b, v) }
func (w *recordWriter) byte(v byte)  { w.b = append(w.b, v) }

// str writes s with a 16-bit length; Matrix IDs and keys are far shorter.
func (w *recordWriter) str(s string) {
	w.b = binary.BigEndian.AppendUint16(w.b, uint16(len(s)))
	w.b = append(w.b, s...)
}

// recordReader reads what recordWriter wrote. A short record makes every
// later read return zero values and err report errCorrupt, so decoders read
// all fields and check once.
type recordReader struct {
	b   []byte
	bad bool
}

func (r *recordReader) take(n int) []byte {
	if r.bad || len(r.b) < n {
		r.bad = true
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *recordReader) u64() uint64 {
	if b := r.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (r *recordReader) u32() uint32 {
	if b := r.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *recordReader) byte() byte {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *recordReader) str() string {
	b := r.take(2)
	if b == nil {
		return ""
	}
	return string(r.take(int(binary.BigEndian.Uint16(b))))
}

// rest returns the unread remainder (a copy: bbolt's memory is only valid
// inside its transaction).
func (r *recordReader) rest() []byte { return append([]byte(nil), r.b...) }

func (r *recordReader) err() error {
	if r.bad {
		return errCorrupt
	}
	return nil
}
