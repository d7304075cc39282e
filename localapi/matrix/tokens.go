package matrix

import (
	"strconv"
	"strings"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// Tokens name points in the global stream. A sync token "s<pos>_<typing>"
// is the durable stream position plus the in-memory typing counter; a
// pagination token "t<pos>" is a point between the event at pos and the
// next one. Positions are stored, so tokens outlive restarts; the typing
// counter restarts at 0, which only makes the next sync resend typing.

type syncToken struct{ pos, eph uint64 }

func (t syncToken) String() string {
	return "s" + strconv.FormatUint(t.pos, 10) + "_" + strconv.FormatUint(t.eph, 10)
}

// parseSyncToken parses a since token.
func parseSyncToken(s string) (syncToken, error) {
	rest, ok := strings.CutPrefix(s, "s")
	if !ok {
		return syncToken{}, matrixerr.InvalidParam("malformed since token")
	}
	p, e, _ := strings.Cut(rest, "_")
	pos, err := strconv.ParseUint(p, 10, 64)
	if err != nil {
		return syncToken{}, matrixerr.InvalidParam("malformed since token")
	}
	var eph uint64
	if e != "" {
		if eph, err = strconv.ParseUint(e, 10, 64); err != nil {
			return syncToken{}, matrixerr.InvalidParam("malformed since token")
		}
	}
	return syncToken{pos, eph}, nil
}

func pageToken(pos uint64) string { return "t" + strconv.FormatUint(pos, 10) }

// parsePageToken accepts pagination tokens and sync tokens (clients pass a
// sync's next_batch or prev_batch to /messages).
func parsePageToken(s string) (uint64, error) {
	if rest, ok := strings.CutPrefix(s, "t"); ok {
		pos, err := strconv.ParseUint(rest, 10, 64)
		if err != nil {
			return 0, matrixerr.InvalidParam("malformed pagination token")
		}
		return pos, nil
	}
	t, err := parseSyncToken(s)
	if err != nil {
		return 0, matrixerr.InvalidParam("malformed pagination token")
	}
	return t.pos, nil
}
