package appservice

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/hearth-chat/hearth/internal/e2ee"
)

// MSC3202 in transactions: what an encrypted bridge's devices would learn
// from /sync, which its users never call — device-list changes, one-time
// key counts and unused fallback key types — goes in its transactions,
// for a registration with org.matrix.msc3202.
//
// They are states rather than events, so they are not queued: each
// transaction works them out from the appservice's persisted delivery
// state (queueState.E2EEPos, the stream position its device lists have
// been sent up to, and E2EESent, the counts it was last sent per device)
// and, once acknowledged, moves that state in the write that deletes the
// transaction's events. Device lists between two positions and the
// latest counts are all a client needs (a /sync that skipped ahead gives
// the same), so working them out again from the persisted state after a
// restart loses nothing. A failed transaction stores its MSC3202 part
// with its range (PendingE2EE): the retry carries exactly the same under
// the same ID.

// E2EE is where the MSC3202 fields come from; the daemon fills it over
// internal/e2ee, the room engine and the client API's device-list code,
// so that they are /sync's.
type E2EE interface {
	// CountsOf returns the counts of the devices with device keys of the
	// users own accepts (user → device → counts).
	CountsOf(own func(userID string) bool) (map[string]map[string]e2ee.DeviceCounts, error)
	// ChangedUsers returns the users whose device lists changed in
	// (from, to].
	ChangedUsers(from, to uint64) ([]string, error)
	// DeviceListChanges is /sync's device_lists of userID for (since, now].
	DeviceListChanges(userID string, since, now uint64) (changed, left []string, err error)
	// SharesRoom reports whether two users are joined to a common room.
	SharesRoom(a, b string) bool
}

// SetE2EE gives the queue its source of MSC3202 data; without one,
// transactions carry none.
func (q *Queue) SetE2EE(src E2EE) {
	q.e2ee.src.Store(&src)
	for _, s := range q.reg.List() {
		if s.Reg.MSC3202 {
			q.kick(s.ID()) // what changed while Hearth was stopped
		}
	}
}

// e2eeState is the queue's in-memory MSC3202 bookkeeping.
type e2eeState struct {
	src atomic.Pointer[E2EE]

	mu sync.Mutex
	// scanned: how far each appservice's device lists were worked out
	// and found empty (a restart works them out again, and finds
	// nothing again), so an idle bridge's range does not grow.
	scanned map[*Service]uint64
	// flight: the MSC3202 part of the transaction being sent whose
	// outcome is not stored yet (nil: it had none), for a retry after a
	// failed write.
	flight map[*Service]*e2eePart
	// checked is how far the follower looked for device-list changes,
	// looked whether it has (only it touches these).
	checked uint64
	looked  bool
}

// deviceLists is MSC3202's device_lists (as /sync's).
type deviceLists struct {
	Changed []string `json:"changed"`
	Left    []string `json:"left"`
}

// msc3202Fields are a transaction's MSC3202 fields, under the MSC's names,
// which mautrix-go's appservice reads when the stable ones are absent
// (it reads the fallback key types but does nothing with them yet).
type msc3202Fields struct {
	DeviceLists *deviceLists                         `json:"org.matrix.msc3202.device_lists,omitempty"`
	OTKCounts   map[string]map[string]map[string]int `json:"org.matrix.msc3202.device_one_time_keys_count,omitempty"`
	Fallback    map[string]map[string][]string       `json:"org.matrix.msc3202.device_unused_fallback_key_types,omitempty"`
}

// e2eePart is the MSC3202 part of one transaction and the delivery state
// it moves to once acknowledged; it is stored as it was sent when the
// transaction fails.
type e2eePart struct {
	Lists    *deviceLists                         `json:"lists,omitempty"`
	OTK      map[string]map[string]map[string]int `json:"otk,omitempty"`
	Fallback map[string]map[string][]string       `json:"fallback,omitempty"`
	// To is the stream position the device lists run to; Next the
	// counts per device the appservice knows once this is delivered.
	To   uint64            `json:"to"`
	Next map[string]string `json:"next"`
}

func (p *e2eePart) fields() msc3202Fields {
	if p == nil {
		return msc3202Fields{}
	}
	return msc3202Fields{DeviceLists: p.Lists, OTKCounts: p.OTK, Fallback: p.Fallback}
}

// delivered moves st past p, acknowledged.
func (st *queueState) delivered(p *e2eePart) {
	st.PendingE2EE = nil
	if p != nil {
		st.E2EEPos, st.E2EESent = max(st.E2EEPos, p.To), p.Next
	}
}

// e2eeRetry reports whether the next transaction is a retry of one that
// carried only MSC3202 data: it must not take new events.
func (q *Queue) e2eeRetry(s *Service, st queueState, inFlight uint64) bool {
	if st.PendingUpTo != 0 || inFlight != 0 {
		return false
	}
	if st.PendingE2EE != nil {
		return true
	}
	q.e2ee.mu.Lock()
	defer q.e2ee.mu.Unlock()
	return q.e2ee.flight[s] != nil
}

// e2eeFor returns the MSC3202 part of s's next transaction: the stored
// one of a retry, or else the changes since what s was last sent; nil
// when there is none.
func (q *Queue) e2eeFor(s *Service, st queueState) (*e2eePart, error) {
	src := q.e2ee.src.Load()
	if src == nil || !s.Reg.MSC3202 {
		return nil, nil
	}
	if st.PendingUpTo != 0 || st.PendingE2EE != nil {
		return st.PendingE2EE, nil // a retry: exactly what went the first time
	}
	q.e2ee.mu.Lock()
	p, inFlight := q.e2ee.flight[s]
	since := max(st.E2EEPos, s.AddedPos, q.e2ee.scanned[s])
	q.e2ee.mu.Unlock()
	if inFlight {
		return p, nil
	}
	now, _ := q.waiter.Pos()
	p, err := workOutE2EE(*src, s, st, since, now)
	if err != nil {
		return nil, fmt.Errorf("appservice %s: MSC3202 data: %w", s.ID(), err)
	}
	if p == nil {
		q.e2ee.mu.Lock()
		if q.e2ee.scanned == nil {
			q.e2ee.scanned = map[*Service]uint64{}
		}
		q.e2ee.scanned[s] = max(q.e2ee.scanned[s], now)
		q.e2ee.mu.Unlock()
	}
	return p, nil
}

// sending records p as the MSC3202 part of the transaction of s being
// sent; settled forgets it once the outcome is stored.
func (q *Queue) sending(s *Service, p *e2eePart) {
	q.e2ee.mu.Lock()
	defer q.e2ee.mu.Unlock()
	if q.e2ee.flight == nil {
		q.e2ee.flight = map[*Service]*e2eePart{}
	}
	q.e2ee.flight[s] = p
}

func (q *Queue) settled(s *Service) {
	q.e2ee.mu.Lock()
	defer q.e2ee.mu.Unlock()
	delete(q.e2ee.flight, s)
}

// workOutE2EE is the MSC3202 data of s between since and now: the counts
// of its users' devices that differ from what it was last sent, and the
// device lists of those users (the ones with keys: only they run
// encryption) merged — a user is left only when none of them shares a
// room with it any more. nil when nothing changed.
func workOutE2EE(src E2EE, s *Service, st queueState, since, now uint64) (*e2eePart, error) {
	counts, err := src.CountsOf(s.OwnsUser)
	if err != nil {
		return nil, err
	}
	p := &e2eePart{To: max(now, since), Next: map[string]string{}}
	var users []string
	for user, devs := range counts {
		users = append(users, user)
		for dev, c := range devs {
			fb := c.UnusedFallback
			if fb == nil {
				fb = []string{}
			}
			b, err := json.Marshal([]any{c.OneTimeKeys, fb})
			if err != nil {
				return nil, err
			}
			k := user + "\x00" + dev
			p.Next[k] = string(b)
			if st.E2EESent[k] == string(b) {
				continue
			}
			if p.OTK == nil {
				p.OTK, p.Fallback = map[string]map[string]map[string]int{}, map[string]map[string][]string{}
			}
			if p.OTK[user] == nil {
				p.OTK[user], p.Fallback[user] = map[string]map[string]int{}, map[string][]string{}
			}
			p.OTK[user][dev], p.Fallback[user][dev] = c.OneTimeKeys, fb
		}
	}
	slices.Sort(users)
	if now > since && len(users) > 0 {
		changed, left := map[string]bool{}, map[string]bool{}
		for _, u := range users {
			c, l, err := src.DeviceListChanges(u, since, now)
			if err != nil {
				return nil, err
			}
			for _, x := range c {
				changed[x] = true
			}
			for _, x := range l {
				left[x] = true
			}
		}
		for x := range left {
			if changed[x] || slices.ContainsFunc(users, func(u string) bool { return u == x || src.SharesRoom(u, x) }) {
				delete(left, x)
			}
		}
		if len(changed) > 0 || len(left) > 0 {
			p.Lists = &deviceLists{Changed: sortedKeys(changed), Left: sortedKeys(left)}
		}
	}
	if p.Lists == nil && p.OTK == nil {
		return nil, nil
	}
	return p, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// kickE2EE wakes the workers of the MSC3202 appservices when a device
// list changed up to pos, so that a change comes in a transaction of its
// own. Member events of their users' rooms wake them by being queued, and
// one-time key counts change with a claim (no stream position) and go
// with the next transaction, as /sync reports them with its next
// response.
func (q *Queue) kickE2EE(pos uint64) {
	src := q.e2ee.src.Load()
	from, looked := q.e2ee.checked, q.e2ee.looked
	q.e2ee.checked, q.e2ee.looked = max(from, pos), true
	if src == nil || !looked || pos <= from {
		return // (the first look: Start woke every worker)
	}
	var ids []string
	for _, s := range q.reg.List() {
		if s.Reg.MSC3202 {
			ids = append(ids, s.ID())
		}
	}
	if len(ids) == 0 {
		return
	}
	users, err := (*src).ChangedUsers(from, pos)
	if err != nil || len(users) == 0 {
		return
	}
	for _, id := range ids {
		q.kick(id)
	}
}
