package push

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/pushrules"

	"github.com/hearth-chat/hearth/internal/room"
)

// recordEncoder encodes the notification log records of one event once
// per distinct list of actions: an event's recipients mostly share their
// actions (the same default rule matched), and encoding mautrix's actions
// for every recipient was ~40% of the log's write transaction in a room
// of 32 members (Issue 15). One encoder serves one event.
type recordEncoder map[string][]byte

func (c recordEncoder) encode(pe *room.PushEvent, r Result, ts int64) []byte {
	key, ok := actionsKey(r.Actions, r.Highlight)
	if ok {
		if b, hit := c[key]; hit {
			return b
		}
	}
	b := encodeRecord(r.Actions, r.Highlight, pe.ThreadRoot, ts)
	if ok {
		c[key] = b
	}
	return b
}

// actionsKey is an unambiguous text form of actions (every string length
// prefixed), false when a tweak value is not a JSON scalar.
func actionsKey(actions pushrules.PushActionArray, highlight bool) (string, bool) {
	var sb strings.Builder
	str := func(s string) {
		sb.WriteString(strconv.Itoa(len(s)))
		sb.WriteByte(':')
		sb.WriteString(s)
	}
	if highlight {
		sb.WriteByte('H')
	}
	for _, a := range actions {
		if a == nil {
			sb.WriteByte('0')
			continue
		}
		sb.WriteByte('A')
		str(string(a.Action))
		str(string(a.Tweak))
		switch v := a.Value.(type) {
		case nil:
			sb.WriteByte('n')
		case string:
			sb.WriteByte('s')
			str(v)
		case bool:
			sb.WriteString(strconv.FormatBool(v))
		case float64:
			sb.WriteByte('f')
			str(strconv.FormatFloat(v, 'g', -1, 64))
		default:
			return "", false
		}
	}
	return sb.String(), true
}

// recordCompact marks a log record in the compact layout (Issue 15):
// 0x01, a flags byte (bit 0: highlight), the timestamp (8 bytes big
// endian), the thread as a uvarint length and its bytes, then the actions
// as JSON or, for the lists the default rules give, one byte numbering
// them in commonActions. Records written before it are JSON objects (they start with
// '{') and carry the event ID too, which nothing reads: GET
// /notifications takes the event from its stream position. The compact
// form is about half the size, so more of them fit a page and a commit
// writes fewer pages, and unread counts read the flags and thread
// without decoding the actions.
const recordCompact = 0x01

func encodeRecord(actions pushrules.PushActionArray, highlight bool, thread string, ts int64) []byte {
	a, _ := json.Marshal(actions)
	b := make([]byte, 0, 2+8+binary.MaxVarintLen64+len(thread)+len(a))
	flags := byte(0)
	if highlight {
		flags |= 1
	}
	b = append(b, recordCompact, flags)
	b = binary.BigEndian.AppendUint64(b, uint64(ts))
	b = binary.AppendUvarint(b, uint64(len(thread)))
	b = append(b, thread...)
	if n, ok := commonActionsIndex[string(a)]; ok {
		return append(b, n)
	}
	return append(b, a...)
}

// commonActions are the action lists of the default rules (defaults.go),
// which nearly every notification carries; a compact record names one
// by its number, 1-based, in place of the JSON. The numbers are stored:
// append only, never reorder.
var commonActions = []string{
	`["notify"]`,
	`["notify",{"set_tweak":"sound","value":"default"}]`,
	`["notify",{"set_tweak":"sound","value":"default"},{"set_tweak":"highlight"}]`,
	`["notify",{"set_tweak":"highlight"}]`,
	`["notify",{"set_tweak":"sound","value":"ring"}]`,
}

// commonActionsIndex maps each common list, as json.Marshal writes it
// from mautrix's types, to its number.
var commonActionsIndex = func() map[string]byte {
	m := map[string]byte{}
	for i, raw := range commonActions {
		var a pushrules.PushActionArray
		if err := json.Unmarshal([]byte(raw), &a); err != nil {
			panic(err)
		}
		b, _ := json.Marshal(a)
		m[string(b)] = byte(i + 1)
	}
	return m
}()

var errBadRecord = errors.New("push: malformed notification record")

// decodeRecord reads a log record in either layout; with withActions
// false it leaves Actions nil (the counts need only thread and highlight).
func decodeRecord(v []byte, withActions bool) (record, error) {
	var r record
	if len(v) == 0 || v[0] != recordCompact {
		err := json.Unmarshal(v, &r)
		return r, err
	}
	if len(v) < 10 {
		return r, errBadRecord
	}
	r.Highlight = v[1]&1 != 0
	r.TS = int64(binary.BigEndian.Uint64(v[2:10]))
	n, w := binary.Uvarint(v[10:])
	if w <= 0 || uint64(len(v)-10-w) < n {
		return r, errBadRecord
	}
	start := 10 + w
	r.Thread = string(v[start : start+int(n)])
	if withActions {
		a := v[start+int(n):]
		if len(a) == 1 && a[0] >= 1 && int(a[0]) <= len(commonActions) {
			a = []byte(commonActions[a[0]-1])
		}
		if err := json.Unmarshal(a, &r.Actions); err != nil {
			return r, err
		}
	}
	return r, nil
}
