package push

import (
	"encoding/json"
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
	b, _ := json.Marshal(record{EventID: pe.Event.EventID, Actions: r.Actions,
		Highlight: r.Highlight, Thread: pe.ThreadRoot, TS: ts})
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
