package matrix

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

// The request body of Simplified Sliding Sync (MSC4186 §"Request Body").
// Clients in the field (matrix-rust-sdk through ruma, matrix-js-sdk) send
// the shape of the MSC's first implementation: `ranges`, required_state
// as [type, state_key] pairs with "*", "$LAZY" and "$ME", `is_invite`,
// pos and timeout in the query. The MSC's current text moved to `range`,
// required_state {include, exclude, lazy_members}, `is_invited` and pos
// in the body; both are accepted.

const (
	maxSlidingLists         = 100 // the MSC's maximum
	maxSlidingRanges        = 16  // ranges per list
	maxSlidingSubscriptions = 1000
	maxRequiredState        = 100 // required_state entries per room config
	maxSlidingTimeline      = 100 // timeline_limit is clamped, as /sync's filter is
	maxConnIDLen            = 64
	maxListKeyLen           = 128
)

type slidingRequest struct {
	ConnID            string                     `json:"conn_id"`
	TxnID             string                     `json:"txn_id"`
	Pos               *string                    `json:"pos"`
	Timeout           *int64                     `json:"timeout"`
	SetPresence       string                     `json:"set_presence"`
	Lists             map[string]slidingListReq  `json:"lists"`
	RoomSubscriptions map[string]slidingRoomReq  `json:"room_subscriptions"`
	Extensions        map[string]json.RawMessage `json:"extensions"`
}

type slidingRoomReq struct {
	TimelineLimit *int64          `json:"timeline_limit"`
	RequiredState json.RawMessage `json:"required_state"`
}

type slidingListReq struct {
	slidingRoomReq
	Ranges  []json.RawMessage `json:"ranges"`
	Range   json.RawMessage   `json:"range"`
	Filters *slidingFilters   `json:"filters"`
}

type slidingFilters struct {
	IsDM         *bool     `json:"is_dm"`
	IsEncrypted  *bool     `json:"is_encrypted"`
	IsInvite     *bool     `json:"is_invite"`
	IsInvited    *bool     `json:"is_invited"`
	RoomTypes    []*string `json:"room_types"`
	NotRoomTypes []*string `json:"not_room_types"`
	Spaces       []string  `json:"spaces"`
	Tags         []string  `json:"tags"`
	NotTags      []string  `json:"not_tags"`
}

// roomConfig is a parsed room config (timeline_limit and required_state).
type roomConfig struct {
	timelineLimit int
	state         room.RequiredState
}

// merge combines two configs into their superset (MSC4186 §"Combining
// room configs").
func (a roomConfig) merge(b roomConfig) roomConfig {
	out := roomConfig{timelineLimit: max(a.timelineLimit, b.timelineLimit)}
	out.state.Include = append(append([]room.StatePattern{}, a.state.Include...), b.state.Include...)
	// An exclusion of one config must not hide what another includes:
	// keep only exclusions both share (exact duplicates).
	for _, x := range a.state.Exclude {
		for _, y := range b.state.Exclude {
			if x == y {
				out.state.Exclude = append(out.state.Exclude, x)
			}
		}
	}
	if len(a.state.Include) == 0 {
		out.state.Exclude = b.state.Exclude
	} else if len(b.state.Include) == 0 {
		out.state.Exclude = a.state.Exclude
	}
	out.state.LazyMembers = a.state.LazyMembers || b.state.LazyMembers
	return out
}

// slidingList is a parsed list.
type slidingList struct {
	key     string
	cfg     roomConfig
	ranges  [][2]int // inclusive; none means the whole list
	filters *slidingFilters
}

// parsedSliding is a checked request.
type parsedSliding struct {
	lists []slidingList
	subs  map[string]roomConfig
}

// parse checks the body and turns it into what the handler works with.
// Bad shapes are M_BAD_JSON, bad values M_INVALID_PARAM.
func (req *slidingRequest) parse(userID string) (*parsedSliding, error) {
	if len(req.ConnID) > maxConnIDLen {
		return nil, matrixerr.InvalidParam("conn_id is too long")
	}
	if len(req.Lists) > maxSlidingLists {
		return nil, matrixerr.InvalidParam(fmt.Sprintf("at most %d lists", maxSlidingLists))
	}
	if len(req.RoomSubscriptions) > maxSlidingSubscriptions {
		return nil, matrixerr.InvalidParam(fmt.Sprintf("at most %d room subscriptions", maxSlidingSubscriptions))
	}
	p := &parsedSliding{subs: map[string]roomConfig{}}
	for key, l := range req.Lists {
		if key == "" || len(key) > maxListKeyLen {
			return nil, matrixerr.InvalidParam("bad list key")
		}
		cfg, err := l.slidingRoomReq.parse(userID)
		if err != nil {
			return nil, err
		}
		sl := slidingList{key: key, cfg: cfg, filters: l.Filters}
		raws := l.Ranges
		if len(l.Range) > 0 && !bytes.Equal(l.Range, []byte("null")) {
			raws = append(raws, l.Range)
		}
		if len(raws) > maxSlidingRanges {
			return nil, matrixerr.InvalidParam(fmt.Sprintf("at most %d ranges a list", maxSlidingRanges))
		}
		for _, raw := range raws {
			var r []int64
			if err := json.Unmarshal(raw, &r); err != nil || len(r) != 2 {
				return nil, matrixerr.BadJSON("a range is a pair of integers")
			}
			if r[0] < 0 || r[1] < r[0] {
				return nil, matrixerr.InvalidParam("a range must be [start, end] with 0 ≤ start ≤ end")
			}
			// Clamp: no user has 2^31 rooms, and the end is inclusive.
			sl.ranges = append(sl.ranges, [2]int{int(min(r[0], 1<<31)), int(min(r[1], 1<<31))})
		}
		if f := l.Filters; f != nil && (len(f.Spaces) > 100 || len(f.RoomTypes) > 100 || len(f.NotRoomTypes) > 100 ||
			len(f.Tags) > 100 || len(f.NotTags) > 100) {
			return nil, matrixerr.InvalidParam("too many filter values")
		}
		p.lists = append(p.lists, sl)
	}
	// Lists in key order, so a room's `lists` come in a stable order.
	slices.SortFunc(p.lists, func(a, b slidingList) int { return strings.Compare(a.key, b.key) })
	for roomID, sub := range req.RoomSubscriptions {
		if len(roomID) == 0 || roomID[0] != '!' {
			return nil, matrixerr.InvalidParam("room_subscriptions keys are room IDs")
		}
		cfg, err := sub.parse(userID)
		if err != nil {
			return nil, err
		}
		p.subs[roomID] = cfg
	}
	return p, nil
}

func (rc slidingRoomReq) parse(userID string) (roomConfig, error) {
	var cfg roomConfig
	if rc.TimelineLimit != nil {
		if *rc.TimelineLimit < 0 {
			return cfg, matrixerr.InvalidParam("timeline_limit must not be negative")
		}
		cfg.timelineLimit = int(min(*rc.TimelineLimit, maxSlidingTimeline))
	}
	raw := bytes.TrimSpace(rc.RequiredState)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return cfg, nil
	}
	if raw[0] == '[' {
		var pairs [][]string
		if err := json.Unmarshal(raw, &pairs); err != nil {
			return cfg, matrixerr.BadJSON("required_state is a list of [type, state_key] pairs")
		}
		if len(pairs) > maxRequiredState {
			return cfg, matrixerr.InvalidParam("required_state is too long")
		}
		for _, pr := range pairs {
			if len(pr) != 2 {
				return cfg, matrixerr.BadJSON("required_state is a list of [type, state_key] pairs")
			}
			if pr[0] == "m.room.member" && pr[1] == "$LAZY" {
				cfg.state.LazyMembers = true
				continue
			}
			cfg.state.Include = append(cfg.state.Include, statePattern(&pr[0], &pr[1], userID, "*"))
		}
		return cfg, nil
	}
	var obj struct {
		Include     []requiredStateElement `json:"include"`
		Exclude     []requiredStateElement `json:"exclude"`
		LazyMembers bool                   `json:"lazy_members"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return cfg, matrixerr.BadJSON("bad required_state")
	}
	if len(obj.Include)+len(obj.Exclude) > maxRequiredState {
		return cfg, matrixerr.InvalidParam("required_state is too long")
	}
	cfg.state.LazyMembers = obj.LazyMembers
	for _, el := range obj.Include {
		cfg.state.Include = append(cfg.state.Include, statePattern(el.Type, el.StateKey, userID, ""))
	}
	for _, el := range obj.Exclude {
		cfg.state.Exclude = append(cfg.state.Exclude, statePattern(el.Type, el.StateKey, userID, ""))
	}
	return cfg, nil
}

// statePattern makes a pattern from a type and state key, either of
// which is a wildcard when absent or equal to wildcard ("*" in the pair
// form); "$ME" stands for the user.
func statePattern(typ, sk *string, userID, wildcard string) room.StatePattern {
	var p room.StatePattern
	if typ == nil || (wildcard != "" && *typ == wildcard) {
		p.AnyType = true
	} else {
		p.Type = *typ
	}
	switch {
	case sk == nil || (wildcard != "" && *sk == wildcard):
		p.AnyKey = true
	case *sk == "$ME":
		p.StateKey = userID
	default:
		p.StateKey = *sk
	}
	return p
}

// requiredStateElement is MSC4186's RequiredStateElement: an absent field
// matches everything.
type requiredStateElement struct {
	Type     *string `json:"type"`
	StateKey *string `json:"state_key"`
}

// stateKey is a canonical form of the config's required_state, kept per
// room sent so a later request can tell whether it asks for more.
func (rc roomConfig) stateKey() string {
	enc := func(ps []room.StatePattern) string {
		out := make([]string, len(ps))
		for i, p := range ps {
			out[i] = patternString(p)
		}
		slices.Sort(out)
		return strings.Join(slices.Compact(out), "\n")
	}
	k := enc(rc.state.Include) + "\x01" + enc(rc.state.Exclude)
	if rc.state.LazyMembers {
		k += "\x01lazy"
	}
	return k
}

func patternString(p room.StatePattern) string {
	t, k := "="+p.Type, "="+p.StateKey
	if p.AnyType {
		t = "*"
	}
	if p.AnyKey {
		k = "*"
	}
	return t + "\x00" + k
}

// stateExpands says whether required_state key now asks for state that
// key was did not: a new include, an exclusion dropped, or lazy members
// turned on. A narrower config needs nothing sent.
func stateExpands(was, now string) bool {
	if was == now {
		return false
	}
	parts := func(k string) (inc, exc []string, lazy bool) {
		f := strings.Split(k, "\x01")
		for len(f) < 3 {
			f = append(f, "")
		}
		split := func(s string) []string {
			if s == "" {
				return nil
			}
			return strings.Split(s, "\n")
		}
		return split(f[0]), split(f[1]), f[2] == "lazy"
	}
	wi, we, wl := parts(was)
	ni, ne, nl := parts(now)
	for _, p := range ni {
		if !slices.Contains(wi, p) {
			return true
		}
	}
	for _, p := range we {
		if !slices.Contains(ne, p) {
			return true
		}
	}
	return nl && !wl
}
