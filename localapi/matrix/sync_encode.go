package matrix

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

// The /sync response is written by hand rather than through
// encoding/json's reflection: a long poll's response is encoded once per
// poll, 50 of them per message in a busy room, and reflection over its
// maps of structs of []any was about 7 % of the daemon's CPU under that
// load (docs/performance.md, "Per-response CPU, second cut"). The output
// is byte for byte what json.Encoder wrote (same field order, omitempty,
// sorted map keys, HTML-safe escaping, raw JSON compacted, trailing
// newline); TestSyncEncodingMatchesEncodingJSON holds it to that, and
// values of types not known here go through json.Marshal.

// syncBufs holds encoding buffers between responses.
var syncBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledSyncBuf keeps an initial sync's large buffer from staying
// pinned in the pool.
const maxPooledSyncBuf = 64 << 10

// syncContentType is shared by every response: net/http only reads it.
var syncContentType = []string{"application/json"}

// writeSync writes resp with status 200 and its length, as
// matrixerr.WriteJSON would have written its body.
func writeSync(w http.ResponseWriter, resp *syncResponse) {
	buf := getSyncBuf()
	defer putSyncBuf(buf)
	if err := encodeSync(syncEncoder{b: buf}, resp); err != nil {
		matrixerr.WriteJSON(w, http.StatusOK, resp) // reports the same error encoding/json would
		return
	}
	writeSyncBytes(w, buf.Bytes())
}

func getSyncBuf() *bytes.Buffer {
	buf := syncBufs.Get().(*bytes.Buffer)
	buf.Reset()
	return buf
}

func putSyncBuf(buf *bytes.Buffer) {
	if buf.Cap() <= maxPooledSyncBuf {
		syncBufs.Put(buf)
	}
}

// writeSyncBytes writes an encoded /sync response.
func writeSyncBytes(w http.ResponseWriter, body []byte) {
	h := w.Header()
	h["Content-Type"] = syncContentType
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// encodeSync appends resp's JSON and a newline to e's buffer.
func encodeSync(e syncEncoder, r *syncResponse) error {
	buf := e.b
	buf.WriteString(`{"next_batch":`)
	e.str(r.NextBatch)
	buf.WriteString(`,"rooms":{"join":`)
	if err := encodeMap(e, r.Rooms.Join, e.joined); err != nil {
		return err
	}
	buf.WriteString(`,"invite":`)
	if err := encodeMap(e, r.Rooms.Invite, func(v invitedRoom) error {
		buf.WriteString(`{"invite_state":`)
		if err := e.list(v.InviteState); err != nil {
			return err
		}
		buf.WriteByte('}')
		return nil
	}); err != nil {
		return err
	}
	buf.WriteString(`,"leave":`)
	if err := encodeMap(e, r.Rooms.Leave, e.left); err != nil {
		return err
	}
	buf.WriteString(`,"knock":`)
	if err := encodeMap(e, r.Rooms.Knock, e.value); err != nil {
		return err
	}
	buf.WriteString(`},"presence":`)
	if err := e.list(r.Presence); err != nil {
		return err
	}
	buf.WriteString(`,"account_data":`)
	if err := e.list(r.AccountData); err != nil {
		return err
	}
	buf.WriteString(`,"to_device":`)
	if err := e.list(r.ToDevice); err != nil {
		return err
	}
	buf.WriteString(`,"device_lists":`)
	if err := encodeMap(e, r.DeviceLists, e.value); err != nil {
		return err
	}
	if e.cuts != nil {
		e.cuts.keys = buf.Len()
	}
	return e.keyCounts(r.OTKCounts, r.FallbackKeyTypes)
}

// keyCounts writes the response's end from its one-time key counts on.
func (e syncEncoder) keyCounts(otk map[string]int, fallback []string) error {
	e.b.WriteString(`,"device_one_time_keys_count":`)
	if err := encodeMap(e, otk, e.int); err != nil {
		return err
	}
	e.b.WriteString(`,"device_unused_fallback_key_types":`)
	e.strings(fallback)
	e.b.WriteString("}\n")
	return nil
}

type syncEncoder struct {
	b    *bytes.Buffer
	cuts *syncCuts // nil unless the response is kept to share
}

// syncCuts are the offsets of a response's per-user parts in its
// encoding: its one joined room's unread counts [unreadFrom, unreadTo),
// and its key counts from keys to the end (sync_shared.go).
type syncCuts struct{ unreadFrom, unreadTo, keys int }

func (e syncEncoder) joined(v joinedRoom) error {
	b := e.b
	b.WriteString(`{"timeline":`)
	if err := e.timeline(v.Timeline); err != nil {
		return err
	}
	if err := e.state(v.roomState); err != nil {
		return err
	}
	b.WriteString(`,"account_data":`)
	if err := e.list(v.AccountData); err != nil {
		return err
	}
	b.WriteString(`,"ephemeral":`)
	if err := e.list(v.Ephemeral); err != nil {
		return err
	}
	b.WriteString(`,"summary":`)
	if err := encodeMap(e, v.Summary, e.value); err != nil {
		return err
	}
	if e.cuts != nil {
		e.cuts.unreadFrom = b.Len()
	}
	if err := e.unread(v.UnreadNotifications, v.UnreadThreadNotifications); err != nil {
		return err
	}
	if e.cuts != nil {
		e.cuts.unreadTo = b.Len()
	}
	b.WriteByte('}')
	return nil
}

// unread writes a joined room's unread counts, the last of its fields.
func (e syncEncoder) unread(counts map[string]int, threads map[string]map[string]int) error {
	e.b.WriteString(`,"unread_notifications":`)
	if err := encodeMap(e, counts, e.int); err != nil {
		return err
	}
	if len(threads) > 0 {
		e.b.WriteString(`,"unread_thread_notifications":`)
		if err := encodeMap(e, threads, func(m map[string]int) error {
			return encodeMap(e, m, e.int)
		}); err != nil {
			return err
		}
	}
	return nil
}

func (e syncEncoder) left(v leftRoom) error {
	e.b.WriteString(`{"timeline":`)
	if err := e.timeline(v.Timeline); err != nil {
		return err
	}
	if err := e.state(v.roomState); err != nil {
		return err
	}
	e.b.WriteString(`,"account_data":`)
	if err := e.list(v.AccountData); err != nil {
		return err
	}
	e.b.WriteByte('}')
	return nil
}

func (e syncEncoder) timeline(t timeline) error {
	e.b.WriteString(`{"events":`)
	if err := e.anys(t.Events); err != nil {
		return err
	}
	e.b.WriteString(`,"limited":`)
	e.b.WriteString(strconv.FormatBool(t.Limited))
	if t.PrevBatch != "" {
		e.b.WriteString(`,"prev_batch":`)
		e.str(t.PrevBatch)
	}
	e.b.WriteByte('}')
	return nil
}

// state writes the present sections of rs, each preceded by a comma (they
// never come first in their object).
func (e syncEncoder) state(rs roomState) error {
	for _, s := range []struct {
		name string
		l    *stateList
	}{{"state", rs.State}, {"state_after", rs.StateAfter}, {"org.matrix.msc4222.state_after", rs.StateAfterUnstable}} {
		if s.l == nil {
			continue
		}
		e.b.WriteString(`,"` + s.name + `":{"events":`)
		if err := e.anys(s.l.Events); err != nil {
			return err
		}
		e.b.WriteByte('}')
	}
	return nil
}

func (e syncEncoder) list(l eventList) error {
	e.b.WriteString(`{"events":`)
	if err := e.raws(l.Events); err != nil {
		return err
	}
	e.b.WriteByte('}')
	return nil
}

func (e syncEncoder) raws(evs []json.RawMessage) error { return encodeSlice(e, evs, e.raw) }

func (e syncEncoder) anys(vs []any) error { return encodeSlice(e, vs, e.value) }

func (e syncEncoder) raw(r json.RawMessage) error {
	if r == nil {
		e.b.WriteString("null")
		return nil
	}
	start := e.b.Len()
	if err := json.Compact(e.b, r); err != nil {
		return fmt.Errorf("sync: raw event: %w", err)
	}
	if out := e.b.Bytes()[start:]; bytes.ContainsAny(out, "<>&\u2028\u2029") {
		esc := bytes.Clone(out)
		e.b.Truncate(start)
		json.HTMLEscape(e.b, esc)
	}
	return nil
}

func (e syncEncoder) clientEvent(ev *room.ClientEvent) error {
	b := e.b
	b.WriteString(`{"content":`)
	if err := e.raw(ev.Content); err != nil {
		return err
	}
	b.WriteString(`,"event_id":`)
	e.str(ev.EventID)
	b.WriteString(`,"origin_server_ts":`)
	b.Write(strconv.AppendInt(b.AvailableBuffer(), ev.OriginServerTS, 10))
	if ev.RoomID != "" {
		b.WriteString(`,"room_id":`)
		e.str(ev.RoomID)
	}
	b.WriteString(`,"sender":`)
	e.str(ev.Sender)
	if ev.StateKey != nil {
		b.WriteString(`,"state_key":`)
		e.str(*ev.StateKey)
	}
	b.WriteString(`,"type":`)
	e.str(ev.Type)
	if ev.Redacts != "" {
		b.WriteString(`,"redacts":`)
		e.str(ev.Redacts)
	}
	if len(ev.Unsigned) > 0 {
		b.WriteString(`,"unsigned":`)
		if err := encodeMap(e, ev.Unsigned, e.value); err != nil {
			return err
		}
	}
	b.WriteByte('}')
	return nil
}

// value writes one value of a type the response holds often, or hands it
// to json.Marshal.
func (e syncEncoder) value(v any) error {
	switch v := v.(type) {
	case room.ClientEvent:
		return e.clientEvent(&v)
	case *room.ClientEvent:
		if v != nil {
			return e.clientEvent(v)
		}
	case json.RawMessage:
		return e.raw(v)
	case string:
		e.str(v)
		return nil
	case int64:
		e.b.Write(strconv.AppendInt(e.b.AvailableBuffer(), v, 10))
		return nil
	case int:
		return e.int(v)
	case []string:
		e.strings(v)
		return nil
	case eventList:
		return e.list(v)
	case map[string]any:
		return encodeMap(e, v, e.value)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	e.b.Write(b)
	return nil
}

func (e syncEncoder) int(n int) error {
	e.b.Write(strconv.AppendInt(e.b.AvailableBuffer(), int64(n), 10))
	return nil
}

func (e syncEncoder) strings(ss []string) {
	encodeSlice(e, ss, func(s string) error { e.str(s); return nil })
}

// str writes s quoted. Plain printable ASCII, the usual case (IDs,
// tokens), is written as it is; anything encoding/json would escape goes
// through json.Marshal so that its escaping is encoding/json's own.
func (e syncEncoder) str(s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s) // a string always marshals
			e.b.Write(b)
			return
		}
	}
	e.b.WriteByte('"')
	e.b.WriteString(s)
	e.b.WriteByte('"')
}

// encodeSlice writes vs as an array, each element by val; null for a nil
// slice, as encoding/json does.
func encodeSlice[V any](e syncEncoder, vs []V, val func(V) error) error {
	if vs == nil {
		e.b.WriteString("null")
		return nil
	}
	e.b.WriteByte('[')
	for i, v := range vs {
		if i > 0 {
			e.b.WriteByte(',')
		}
		if err := val(v); err != nil {
			return err
		}
	}
	e.b.WriteByte(']')
	return nil
}

// encodeMap writes m with its keys sorted, as encoding/json does; null for
// a nil map.
func encodeMap[V any](e syncEncoder, m map[string]V, val func(V) error) error {
	if m == nil {
		e.b.WriteString("null")
		return nil
	}
	e.b.WriteByte('{')
	var small [8]string // most of the response's maps are this small
	keys := small[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		if i > 0 {
			e.b.WriteByte(',')
		}
		e.str(k)
		e.b.WriteByte(':')
		if err := val(m[k]); err != nil {
			return err
		}
	}
	e.b.WriteByte('}')
	return nil
}
