package appservice

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
)

// Events is the room engine as the queue reads it (*room.Engine).
type Events interface {
	EventsAfter(from, to uint64, fn func(*room.StreamEvent) error) error
	LocalJoinedAndAlias(roomID string) (members []string, alias string, err error)
}

// roomFacts is what interest in a room's events depends on beyond the
// event: its joined local members and canonical alias.
type roomFacts struct {
	members []string
	alias   string
}

// maxRoomFacts bounds the follower's cache of room facts.
const maxRoomFacts = 4096

// Waiter is the stream notifier (*stream.Notifier).
type Waiter interface {
	Pos() (pos, ephemeral uint64)
	Wait(ctx context.Context, pos, ephemeral uint64) error
}

// Limits of the queues (Application Service API §"Pushing events").
const (
	followBatch    = 1000   // events looked at in one write
	maxTxnEvents   = 100    // events and ephemeral events in one transaction
	maxQueuedPerAS = 10_000 // beyond this an appservice's new events are dropped
)

const (
	kindEvent     = 1
	kindEphemeral = 2
	kindToDevice  = 3
)

var keyPos = []byte("pos")

// queueState is one appservice's delivery state in bucket asmeta.
type queueState struct {
	NextTxn uint64 `json:"next_txn"`
	// PendingUpTo is the last seq of a transaction that failed: its retry
	// sends exactly those entries under the same ID, even after a
	// restart. (A first attempt keeps its range in memory only, so no
	// write precedes it; see Start for a crash during one.)
	PendingUpTo uint64 `json:"pending_up_to,omitempty"`
	Failures    int    `json:"failures,omitempty"`
	LastError   string `json:"last_error,omitempty"`
	NextTry     int64  `json:"next_try,omitempty"` // unix ms
	LastSuccess int64  `json:"last_success,omitempty"`
	Dropped     uint64 `json:"dropped,omitempty"`
}

func stateKey(id string) []byte { return store.Key("s", id) }

// Queue pushes events to the appservices, persistently: a follower reads
// the stream and, in the same write that moves its position, queues each
// event for every appservice interested in it (Application Service API
// §"Pushing events"); one worker per appservice sends its queue in order
// as transactions, deletes what it acknowledged and backs off (5 s
// doubling to 1 h) on failure. A retry sends the same events under the
// same transaction ID, and the counter is stored, so a restart neither
// loses nor repeats anything.
type Queue struct {
	reg    *Registry
	db     *store.DB
	events Events
	waiter Waiter

	// Tunables; tests shorten them.
	minBackoff, maxBackoff time.Duration
	sendTimeout            time.Duration // one transaction's whole request
	maxQueued              int           // entries per appservice; beyond, new ones are dropped

	mu      sync.Mutex
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	workers map[string]chan struct{} // wake channel of each running worker
	counts  map[string]int           // entries queued per appservice
	// scanned is how far the follower has looked without finding
	// anything to queue (only it touches this): the stored position
	// moves only with entries, so a server without appservices, or
	// whose events concern none, pays no write per commit. A restart
	// looks at those events again, and finds nothing again (an
	// appservice registered meanwhile never gets what came before it).
	scanned uint64
	// facts caches each room's facts for the follower (only it touches
	// this), dropped when a member or canonical alias event of the room
	// passes: reading them per event would cost a portal of 100 ghosts
	// more than the delivery itself.
	facts map[string]*roomFacts
}

// NewQueue returns the queue of reg's appservices; Start runs it.
func NewQueue(reg *Registry, db *store.DB, events Events, waiter Waiter) *Queue {
	q := &Queue{reg: reg, db: db, events: events, waiter: waiter, minBackoff: 5 * time.Second, maxBackoff: time.Hour,
		sendTimeout: requestTimeout, maxQueued: maxQueuedPerAS, workers: map[string]chan struct{}{}, counts: map[string]int{}}
	reg.queued = q.queued
	reg.onPing = q.Wake
	reg.reset = q.forget
	return q
}

// Start counts what is queued, starts a worker for every appservice and
// the follower. A new store starts following from the current position.
func (q *Queue) Start() error {
	err := q.db.Update(context.Background(), func(tx *store.Tx) error {
		if tx.Get(store.AppserviceMeta, keyPos) == nil {
			if err := tx.Put(store.AppserviceMeta, keyPos, store.PutU64(tx.Pos())); err != nil {
				return err
			}
		}
		// A transaction may have been in flight when the last process
		// ended, its range known only in memory: its ID is never used
		// again for another range (the appservice would take it for a
		// repeat and drop it). What it carried is sent again under the
		// next ID; an appservice that had taken it sees those events
		// twice — the one window, as for federation's queue, where a
		// crash can repeat rather than lose.
		for _, s := range q.reg.List() {
			st, err := loadState(tx, s.ID())
			if err != nil {
				return err
			}
			if st.PendingUpTo == 0 { // (an ID skipped costs nothing)
				st.NextTxn++
				if err := saveState(tx, s.ID(), st); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("appservice queue: %w", err)
	}
	q.db.View(func(tx *store.Tx) error {
		return tx.Bucket(store.AppserviceQueue).ForEach(func(k, _ []byte) error {
			q.counts[idOfKey(k)]++
			return nil
		})
	})
	q.mu.Lock()
	q.ctx, q.cancel = context.WithCancel(context.Background())
	q.mu.Unlock()
	for _, s := range q.reg.List() {
		q.kick(s.ID())
	}
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		q.follow(q.ctx)
	}()
	return nil
}

// Stop ends the follower and the workers; what was not acknowledged
// stays queued.
func (q *Queue) Stop() {
	q.mu.Lock()
	if q.cancel != nil {
		q.cancel()
	}
	q.mu.Unlock()
	q.wg.Wait()
}

func idOfKey(k []byte) string {
	if i := bytes.IndexByte(k, 0); i >= 0 {
		return string(k[:i])
	}
	return ""
}

// forget drops the count of an appservice that was removed or added
// again: its entries went with its registration.
func (q *Queue) forget(id string) {
	q.mu.Lock()
	delete(q.counts, id)
	q.mu.Unlock()
}

func (q *Queue) queued(id string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.counts[id]
}

// Wake ends an appservice's back-off (it just showed it is up, e.g. by a
// ping) and sends what is queued.
func (q *Queue) Wake(id string) {
	q.db.Update(context.Background(), func(tx *store.Tx) error {
		st, err := loadState(tx, id)
		if err != nil || st.Failures == 0 {
			return err
		}
		st.Failures, st.NextTry = 0, 0
		return saveState(tx, id, st)
	})
	q.kick(id)
}

// kick wakes id's worker, starting it if none runs.
func (q *Queue) kick(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.ctx == nil || q.ctx.Err() != nil {
		return
	}
	if ch, ok := q.workers[id]; ok {
		select {
		case ch <- struct{}{}:
		default:
		}
		return
	}
	ch := make(chan struct{}, 1)
	ch <- struct{}{}
	q.workers[id] = ch
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		q.work(q.ctx, id, ch)
		q.mu.Lock()
		delete(q.workers, id)
		q.mu.Unlock()
		if q.reg.Get(id) != nil {
			q.kick(id) // added again under this id: a new worker, fresh state
		}
	}()
}

// follow queues new events until ctx ends, woken by the notifier.
func (q *Queue) follow(ctx context.Context) {
	for {
		pos, eph := q.waiter.Pos()
		done, err := q.step(ctx, pos)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			slog.Error("appservice queue: queueing events", "err", err)
			t := time.NewTimer(q.minBackoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		if done {
			if err := q.waiter.Wait(ctx, pos, eph); err != nil {
				return
			}
		}
	}
}

var errBatchFull = errors.New("batch full")

// interested reports whether appservice s wants se (Application Service
// API §"Pushing events": a namespaced sender or member, a member event
// about a namespaced user, the room ID or its alias).
func (s *Service) interested(se *room.StreamEvent, f *roomFacts) bool {
	if s.OwnsUser(se.Event.Sender) {
		return true
	}
	if se.Event.Type == "m.room.member" && se.Event.StateKey != nil && s.OwnsUser(*se.Event.StateKey) {
		return true
	}
	for _, m := range f.members {
		if s.OwnsUser(m) {
			return true
		}
	}
	if m, _ := matches(s.Reg.Namespaces.Rooms, se.RoomID); m {
		return true
	}
	if f.alias != "" {
		if m, _ := matches(s.Reg.Namespaces.Aliases, f.alias); m {
			return true
		}
	}
	return false
}

// roomFacts returns roomID's facts, from the cache or the store.
func (q *Queue) roomFacts(roomID string) (*roomFacts, error) {
	if f := q.facts[roomID]; f != nil {
		return f, nil
	}
	members, alias, err := q.events.LocalJoinedAndAlias(roomID)
	if err != nil {
		return nil, err
	}
	if q.facts == nil || len(q.facts) >= maxRoomFacts {
		q.facts = map[string]*roomFacts{}
	}
	f := &roomFacts{members: members, alias: alias}
	q.facts[roomID] = f
	return f, nil
}

// step queues the events after the stored position up to pos (at most
// followBatch of them) and moves the position in the same write.
func (q *Queue) step(ctx context.Context, pos uint64) (done bool, err error) {
	var from uint64
	q.db.View(func(tx *store.Tx) error { from = store.U64(tx.Get(store.AppserviceMeta, keyPos)); return nil })
	from = max(from, q.scanned)
	if from >= pos {
		return true, nil
	}
	services := q.reg.List()
	if len(services) == 0 {
		q.scanned = pos // nobody to tell: nothing to read
		q.facts = nil   // nor to keep up to date
		return true, nil
	}
	type entry struct {
		id string
		v  []byte
	}
	var entries []entry
	last, n := pos, 0
	err = q.events.EventsAfter(from, pos, func(se *room.StreamEvent) error {
		if n == followBatch {
			last = se.Pos - 1
			return errBatchFull
		}
		n++
		if se.Event.StateKey != nil && (se.Event.Type == "m.room.member" || se.Event.Type == "m.room.canonical_alias") {
			delete(q.facts, se.RoomID) // read again after this event
		}
		f, err := q.roomFacts(se.RoomID)
		if err != nil {
			return err
		}
		var v []byte
		for _, s := range services {
			if se.Pos <= s.AddedPos || !s.interested(se, f) {
				continue
			}
			if v == nil {
				b, err := json.Marshal(se.Event)
				if err != nil {
					return fmt.Errorf("encode event: %w", err)
				}
				v = append([]byte{kindEvent}, b...)
			}
			entries = append(entries, entry{s.ID(), v})
		}
		return nil
	})
	if err != nil && !errors.Is(err, errBatchFull) {
		return false, fmt.Errorf("events after %d: %w", from, err)
	}
	if len(entries) == 0 {
		q.scanned = last
		return false, nil
	}
	added := map[string]int{}
	dropped := map[string]uint64{}
	err = q.db.Update(ctx, func(tx *store.Tx) error {
		clear(added)
		clear(dropped)
		q.mu.Lock()
		counts := map[string]int{}
		for id, c := range q.counts {
			counts[id] = c
		}
		maxQueued := q.maxQueued
		q.mu.Unlock()
		for _, e := range entries {
			if q.reg.Get(e.id) == nil {
				continue // removed meanwhile
			}
			if counts[e.id]+added[e.id] >= maxQueued {
				dropped[e.id]++
				continue
			}
			if err := putEntry(tx, e.id, e.v); err != nil {
				return err
			}
			added[e.id]++
		}
		for id, d := range dropped {
			st, err := loadState(tx, id)
			if err != nil {
				return err
			}
			st.Dropped += d
			if err := saveState(tx, id, st); err != nil {
				return err
			}
		}
		return tx.Put(store.AppserviceMeta, keyPos, store.PutU64(max(last, from)))
	})
	if err != nil {
		return false, err
	}
	q.mu.Lock()
	for id, c := range added {
		q.counts[id] += c
	}
	q.mu.Unlock()
	for id := range added {
		q.kick(id)
	}
	for id, d := range dropped {
		slog.Warn("appservice queue full: events dropped", "appservice", id, "dropped", d)
	}
	return false, nil
}

func putEntry(tx *store.Tx, id string, v []byte) error {
	seq, err := tx.NextID(store.AppserviceQueue)
	if err != nil {
		return err
	}
	return tx.Put(store.AppserviceQueue, append(store.Key(id, ""), store.PutU64(seq)...), v)
}

func loadState(tx *store.Tx, id string) (queueState, error) {
	var st queueState
	if b := tx.Get(store.AppserviceMeta, stateKey(id)); b != nil {
		if err := json.Unmarshal(b, &st); err != nil {
			return st, fmt.Errorf("appservice %s: decode queue state: %w", id, err)
		}
	}
	return st, nil
}

func saveState(tx *store.Tx, id string, st queueState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return tx.Put(store.AppserviceMeta, stateKey(id), b)
}

// WantsEphemeral reports whether any appservice asked for ephemeral
// events: callers skip the room's member list otherwise.
func (q *Queue) WantsEphemeral() bool {
	for _, s := range q.reg.List() {
		if s.Reg.Ephemeral() {
			return true
		}
	}
	return false
}

// QueueEphemeral queues an ephemeral event (m.typing, m.receipt) of roomID
// for the appservices that asked for them (MSC2409, receive_ephemeral)
// and have a user among members or claim the room. Best effort, like
// every ephemeral event.
func (q *Queue) QueueEphemeral(ctx context.Context, roomID string, members []string, ev map[string]any) error {
	var ids []string
	for _, s := range q.reg.List() {
		if !s.Reg.Ephemeral() {
			continue
		}
		want, _ := matches(s.Reg.Namespaces.Rooms, roomID)
		for _, m := range members {
			want = want || s.OwnsUser(m)
		}
		if want {
			ids = append(ids, s.ID())
		}
	}
	if len(ids) == 0 {
		return nil
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	return q.queueFor(ctx, map[string][][]byte{}, ids, append([]byte{kindEphemeral}, b...))
}

// QueueToDevice queues the to-device messages a local user sent to the
// devices of appservice users (MSC4203, with receive_ephemeral): each as
// {type, sender, content, to_user_id, to_device_id}, "*" expanded to the
// user's devices. The appservice's users never /sync, so this is how
// their devices receive them.
func (q *Queue) QueueToDevice(ctx context.Context, sender, evType string, messages map[string]map[string]json.RawMessage,
	devices func(userID string) ([]string, error)) error {
	per := map[string][][]byte{}
	var ids []string
	for _, s := range q.reg.List() {
		if !s.Reg.Ephemeral() {
			continue
		}
		for userID, byDevice := range messages {
			if !s.OwnsUser(userID) {
				continue
			}
			for dev, content := range byDevice {
				targets := []string{dev}
				if dev == "*" {
					var err error
					if targets, err = devices(userID); err != nil {
						return err
					}
				}
				for _, d := range targets {
					b, err := json.Marshal(map[string]any{"type": evType, "sender": sender, "content": content,
						"to_user_id": userID, "to_device_id": d})
					if err != nil {
						return err
					}
					if len(per[s.ID()]) == 0 {
						ids = append(ids, s.ID())
					}
					per[s.ID()] = append(per[s.ID()], append([]byte{kindToDevice}, b...))
				}
			}
		}
	}
	if len(ids) == 0 {
		return nil
	}
	return q.queueFor(ctx, per, ids, nil)
}

// queueFor queues per[id]'s entries, or v when per has none for id, for
// each of ids in one write, within each queue's bound.
func (q *Queue) queueFor(ctx context.Context, per map[string][][]byte, ids []string, v []byte) error {
	added := map[string]int{}
	q.mu.Lock()
	maxQueued := q.maxQueued
	q.mu.Unlock()
	err := q.db.Update(ctx, func(tx *store.Tx) error {
		clear(added)
		for _, id := range ids {
			vs := per[id]
			if len(vs) == 0 {
				vs = [][]byte{v}
			}
			for _, v := range vs {
				if q.queued(id)+added[id] >= maxQueued {
					break
				}
				if err := putEntry(tx, id, v); err != nil {
					return err
				}
				added[id]++
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	q.mu.Lock()
	for id, c := range added {
		q.counts[id] += c
	}
	q.mu.Unlock()
	for id := range added {
		q.kick(id)
	}
	return nil
}

// transaction is the body of PUT /_matrix/app/v1/transactions/{txnId}.
type transaction struct {
	Events    []json.RawMessage `json:"events"`
	Ephemeral []json.RawMessage `json:"ephemeral,omitempty"`
	// The unstable name MSC2409 used first, which older bridges read.
	MSC2409Ephemeral []json.RawMessage `json:"de.sorunome.msc2409.ephemeral,omitempty"`
	// To-device messages for the appservice's users (MSC4203), under
	// both names too.
	ToDevice        []json.RawMessage `json:"to_device,omitempty"`
	MSC2409ToDevice []json.RawMessage `json:"de.sorunome.msc2409.to_device,omitempty"`
}

// work sends id's queue until it is empty, then waits for a kick; it
// returns when ctx ends or the registration it started with is removed
// (or replaced: the in-flight transaction was the old one's).
func (q *Queue) work(ctx context.Context, id string, wake chan struct{}) {
	var inFlight uint64 // last seq of the transaction being tried, 0: none
	reg := q.reg.Get(id)
	for {
		select {
		case <-ctx.Done():
			return
		case <-wake:
		}
		for {
			s := q.reg.Get(id)
			if s == nil || s != reg {
				return
			}
			more, wait, err := q.sendOne(ctx, s, &inFlight)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				slog.Info("appservice transaction failed", "appservice", id, "err", err, "retry_in", wait)
			}
			if wait > 0 {
				// A kick (a Wake after a ping) may end the wait early;
				// sendOne then honours whatever back-off is left.
				t := time.NewTimer(wait)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				case <-wake:
					t.Stop()
				}
				continue
			}
			if !more {
				break
			}
		}
	}
}

// sendOne sends the next transaction of s. more: something may be left;
// wait: the back-off before the next attempt.
//
// The range of a first attempt is chosen here and kept in *inFlight (no
// write before sending: the latency to the appservice is one commit, the
// follower's); a failure stores it, so that every retry sends the same
// events under the same ID.
func (q *Queue) sendOne(ctx context.Context, s *Service, inFlight *uint64) (more bool, wait time.Duration, err error) {
	id := s.ID()
	var st queueState
	var txn transaction
	var upTo uint64
	err = q.db.View(func(tx *store.Tx) error {
		var err error
		if st, err = loadState(tx, id); err != nil {
			return err
		}
		pending := st.PendingUpTo
		if pending == 0 {
			pending = *inFlight
		}
		prefix := store.Key(id, "")
		c := tx.Cursor(store.AppserviceQueue)
		n := 0
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			seq := store.U64(k[len(prefix):])
			if pending != 0 && seq > pending || pending == 0 && n == maxTxnEvents {
				break
			}
			n++
			upTo = seq
			switch v[0] {
			case kindEvent:
				txn.Events = append(txn.Events, json.RawMessage(bytes.Clone(v[1:])))
			case kindEphemeral:
				txn.Ephemeral = append(txn.Ephemeral, json.RawMessage(bytes.Clone(v[1:])))
			case kindToDevice:
				txn.ToDevice = append(txn.ToDevice, json.RawMessage(bytes.Clone(v[1:])))
			}
		}
		return nil
	})
	if err != nil || upTo == 0 {
		*inFlight = 0
		return false, 0, err
	}
	*inFlight = upTo
	if d := time.Until(time.UnixMilli(st.NextTry)); st.NextTry != 0 && d > 0 {
		return true, d, nil
	}
	if txn.Events == nil {
		txn.Events = []json.RawMessage{}
	}
	txn.MSC2409Ephemeral, txn.MSC2409ToDevice = txn.Ephemeral, txn.ToDevice
	txnID := strconv.FormatInt(s.AddedTS, 10) + "." + strconv.FormatUint(st.NextTxn, 10)
	sendCtx, cancel := context.WithTimeout(ctx, q.sendTimeout)
	sendErr := s.call(sendCtx, http.MethodPut, "/_matrix/app/v1/transactions/"+txnID, txn, nil)
	cancel()
	if ctx.Err() != nil {
		return false, 0, ctx.Err()
	}
	deleted := 0
	err = q.db.Update(context.WithoutCancel(ctx), func(tx *store.Tx) error {
		deleted = 0
		if q.reg.Get(id) != s {
			return nil // removed (or replaced) while this was sent: its state went with it
		}
		st, err := loadState(tx, id)
		if err != nil {
			return err
		}
		if sendErr != nil {
			st.PendingUpTo = upTo // a retry sends exactly these under the same txn ID
			st.Failures++
			st.LastError = sendErr.Error()
			backoff := q.minBackoff << min(st.Failures-1, 20)
			st.NextTry = time.Now().Add(min(backoff, q.maxBackoff)).UnixMilli()
			return saveState(tx, id, st)
		}
		prefix := store.Key(id, "")
		c := tx.Cursor(store.AppserviceQueue)
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && store.U64(k[len(prefix):]) <= upTo; k, _ = c.Seek(prefix) {
			if err := c.Delete(); err != nil {
				return err
			}
			deleted++
		}
		st.NextTxn++
		st.PendingUpTo, st.Failures, st.NextTry = 0, 0, 0
		st.LastError = ""
		st.LastSuccess = time.Now().UnixMilli()
		return saveState(tx, id, st)
	})
	if err != nil {
		return false, q.minBackoff, err
	}
	if sendErr == nil {
		*inFlight = 0
	}
	if sendErr != nil {
		q.reg.health.failed(id, sendErr)
		return true, max(q.backoffFor(id), time.Millisecond), sendErr
	}
	q.mu.Lock()
	q.counts[id] -= deleted
	q.mu.Unlock()
	q.reg.health.succeeded(id)
	return true, 0, nil
}

// backoffFor is the wait the stored state asks for now.
func (q *Queue) backoffFor(id string) time.Duration {
	var d time.Duration
	q.db.View(func(tx *store.Tx) error {
		st, err := loadState(tx, id)
		if err == nil && st.NextTry != 0 {
			d = time.Until(time.UnixMilli(st.NextTry))
		}
		return nil
	})
	return max(d, 0)
}
