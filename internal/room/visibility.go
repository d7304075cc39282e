package room

import (
	"math"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// window is the range of stream positions whose events a user may see in a
// room (Client-Server API §"History visibility").
type window struct{ from, to uint64 }

func (w window) contains(pos uint64) bool { return pos >= w.from && pos <= w.to }

// visibility computes what userID may read of a room. It uses the current
// history_visibility rather than the one at each event, and for a user who
// has left it ends at their leave; both are simplifications of the spec's
// per-event rule that matter only when visibility changes over time.
func (e *Engine) visibility(tx *store.Tx, userID string, info *Info) (window, error) {
	hv := "shared"
	if ev, err := e.currentStateEvent(tx, info.NID, "m.room.history_visibility", ""); err != nil {
		return window{}, err
	} else if ev != nil {
		if v, err := ev.PDU.HistoryVisibility(); err == nil {
			hv = string(v)
		}
	}
	if hv == "world_readable" {
		return window{0, math.MaxUint64}, nil
	}
	m := membershipIn(tx, userID, info.NID)
	switch m.Membership {
	case "join":
		if hv == "joined" || hv == "invited" {
			return window{m.Pos, math.MaxUint64}, nil
		}
		return window{0, math.MaxUint64}, nil
	case "leave", "ban":
		if hv == "joined" || hv == "invited" {
			return window{m.Pos, m.Pos}, nil
		}
		return window{0, m.Pos}, nil
	}
	return window{}, matrixerr.Forbidden("you are not a member of this room")
}
