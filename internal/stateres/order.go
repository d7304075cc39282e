package stateres

import (
	"cmp"
	"container/heap"
	"fmt"
	"math"
	"slices"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// authOfType is the event of the given type (empty state key) among id's
// auth events, or nil. The create event is among them: listed before v12,
// implied in v12 (AuthEventIDs prepends it).
func (r *resolver) authOfType(id, typ string) gomatrixserverlib.PDU {
	for _, a := range r.authIDs[id] {
		if p, ok := r.events[a]; ok && p.Type() == typ && p.StateKeyEquals("") {
			return p
		}
	}
	return nil
}

func (r *resolver) creatorsOf(create gomatrixserverlib.PDU) (out []string) {
	if c, ok := r.creators[create.EventID()]; ok {
		return c
	}
	func() {
		defer func() { _ = recover() }() // unparseable content: no creators
		out = gomatrixserverlib.CreatorsFromCreateEvent(create)
	}()
	r.creators[create.EventID()] = out
	return out
}

// senderPower is the power level of the sender of event id "when looking at
// its auth_events" (§"Reverse topological power ordering"). In room versions
// with privileged creators (v12, MSC4289) the creators outrank every level:
// they get CreatorPowerLevel, above the largest level canonical JSON allows.
func (r *resolver) senderPower(id string) int64 {
	if v, ok := r.senderPL[id]; ok {
		return v
	}
	p := r.events[id]
	sender := string(p.SenderID())
	create := r.authOfType(id, spec.MRoomCreate)
	level := int64(0)
	switch pl := r.authOfType(id, spec.MRoomPowerLevels); {
	case create != nil && r.ver.PrivilegedCreators() && slices.Contains(r.creatorsOf(create), sender):
		level = gomatrixserverlib.CreatorPowerLevel
	case pl != nil:
		if c := r.powerLevels(pl); c != nil {
			level = c.UserLevel(p.SenderID())
		}
	case create != nil && !r.ver.PrivilegedCreators() && string(create.SenderID()) == sender:
		level = 100 // no power levels yet: the creator is the room's admin
	}
	r.senderPL[id] = level
	return level
}

func (r *resolver) powerLevels(pl gomatrixserverlib.PDU) *gomatrixserverlib.PowerLevelContent {
	if c, ok := r.plContent[pl.EventID()]; ok {
		return c
	}
	var out *gomatrixserverlib.PowerLevelContent
	if c, err := gomatrixserverlib.NewPowerLevelContentFromEvent(pl); err == nil {
		out = &c
	}
	r.plContent[pl.EventID()] = out
	return out
}

// powerOrder sorts ids by the reverse topological power ordering: Kahn's
// algorithm over the auth DAG, taking at each step the smallest ready event,
// where x < y if x's sender has the greater power level, then the smaller
// origin_server_ts, then the smaller event ID. An edge joins two events of
// ids when one is an ancestor of the other, also through events outside ids.
func (r *resolver) powerOrder(ids []string) ([]gomatrixserverlib.PDU, error) {
	in := make(map[string]bool, len(ids))
	for _, id := range ids {
		in[id] = true
	}
	// nearest[x] is the set of ids-members closest to x along auth edges,
	// memoised for the events outside ids that the walk passes through.
	nearest := map[string][]string{}
	var below func(id string) []string
	below = func(id string) []string {
		if v, ok := nearest[id]; ok {
			return v
		}
		nearest[id] = nil // guards against a (malformed) cycle
		var out []string
		for _, a := range r.authIDs[id] {
			if in[a] {
				out = append(out, a)
			} else if _, known := r.events[a]; known {
				out = append(out, below(a)...)
			}
		}
		slices.Sort(out)
		out = slices.Compact(out)
		nearest[id] = out
		return out
	}
	children := map[string][]string{}
	indeg := make(map[string]int, len(ids))
	q := &readyQueue{}
	for _, id := range ids {
		var parents []string
		for _, a := range r.authIDs[id] {
			if in[a] {
				parents = append(parents, a)
			} else if _, known := r.events[a]; known {
				parents = append(parents, below(a)...)
			}
		}
		slices.Sort(parents)
		parents = slices.Compact(parents)
		indeg[id] = len(parents)
		for _, p := range parents {
			children[p] = append(children[p], id)
		}
		if len(parents) == 0 {
			q.items = append(q.items, r.readyItem(id))
		}
	}
	heap.Init(q)
	out := make([]gomatrixserverlib.PDU, 0, len(ids))
	for q.Len() > 0 {
		it := heap.Pop(q).(readyItem)
		out = append(out, r.events[it.id])
		for _, c := range children[it.id] {
			if indeg[c]--; indeg[c] == 0 {
				heap.Push(q, r.readyItem(c))
			}
		}
	}
	if len(out) != len(ids) {
		return nil, fmt.Errorf("stateres: auth events of %d power events form a cycle", len(ids)-len(out))
	}
	return out, nil
}

type readyItem struct {
	id    string
	power int64
	ts    spec.Timestamp
}

func (r *resolver) readyItem(id string) readyItem {
	return readyItem{id: id, power: r.senderPower(id), ts: r.events[id].OriginServerTS()}
}

type readyQueue struct{ items []readyItem }

func (q *readyQueue) Len() int { return len(q.items) }
func (q *readyQueue) Less(i, j int) bool {
	a, b := q.items[i], q.items[j]
	return cmp.Or(cmp.Compare(b.power, a.power), cmp.Compare(a.ts, b.ts), cmp.Compare(a.id, b.id)) < 0
}
func (q *readyQueue) Swap(i, j int) { q.items[i], q.items[j] = q.items[j], q.items[i] }
func (q *readyQueue) Push(x any)    { q.items = append(q.items, x.(readyItem)) }
func (q *readyQueue) Pop() any {
	it := q.items[len(q.items)-1]
	q.items = q.items[:len(q.items)-1]
	return it
}

// mainlineOrder sorts ids by the mainline ordering based on the power levels
// event pl (§"Mainline ordering"): x < y if x's mainline position is greater,
// then by smaller origin_server_ts, then by smaller event ID. An event whose
// chain of power_levels auth events never meets the mainline has position ∞,
// as does every event when pl is nil (no power levels resolved yet).
func (r *resolver) mainlineOrder(ids []string, pl gomatrixserverlib.PDU) []gomatrixserverlib.PDU {
	const inf = math.MaxInt
	pos := map[string]int{} // power_levels event ID → mainline position
	for i, p := 0, pl; p != nil; i, p = i+1, r.authOfType(p.EventID(), spec.MRoomPowerLevels) {
		if _, dup := pos[p.EventID()]; dup {
			break
		}
		pos[p.EventID()] = i
	}
	// position of a power_levels event off the mainline, memoised
	var posOf func(id string) int
	posOf = func(id string) int {
		if v, ok := pos[id]; ok {
			return v
		}
		pos[id] = inf // guards against a (malformed) cycle
		v := inf
		if next := r.authOfType(id, spec.MRoomPowerLevels); next != nil {
			v = posOf(next.EventID())
		}
		pos[id] = v
		return v
	}
	type item struct {
		p   gomatrixserverlib.PDU
		pos int
	}
	items := make([]item, 0, len(ids))
	for _, id := range ids {
		it := item{p: r.events[id], pos: inf}
		if first := r.authOfType(id, spec.MRoomPowerLevels); first != nil {
			it.pos = posOf(first.EventID())
		}
		items = append(items, it)
	}
	slices.SortFunc(items, func(a, b item) int {
		return cmp.Or(cmp.Compare(b.pos, a.pos), cmp.Compare(a.p.OriginServerTS(), b.p.OriginServerTS()),
			cmp.Compare(a.p.EventID(), b.p.EventID()))
	})
	out := make([]gomatrixserverlib.PDU, len(items))
	for i, it := range items {
		out[i] = it.p
	}
	return out
}
