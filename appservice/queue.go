package appservice

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
)

// Events is the room engine as the queue reads it (*room.Engine).
type Events interface {
	EventsAfter(from, to uint64, fn func(*room.StreamEvent) error) error
	LocalJoinedAndAlias(roomID string) (members []string, alias string, err error)
	JoinedRooms(userID string) ([]string, error)
}

// roomFacts is what interest in a room's events depends on beyond the
// event: its joined local members and canonical alias.
type roomFacts struct {
	members []string
	alias   string
	// owns says, per appservice, whether one of its users is among
	// members, worked out on first need: a portal of 100 ghosts with 50
	// appservices registered would otherwise cost 5,000 regex matches
	// per event.
	owns map[*Service]bool
}

// hasMember reports whether one of s's users is a joined local member.
func (f *roomFacts) hasMember(s *Service) bool {
	if v, ok := f.owns[s]; ok {
		return v
	}
	v := false
	for _, m := range f.members {
		if s.OwnsUser(m) {
			v = true
			break
		}
	}
	if f.owns == nil {
		f.owns = map[*Service]bool{}
	}
	f.owns[s] = v
	return v
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
	// MSC3202 (e2ee.go): device lists sent up to E2EEPos, the counts
	// last sent per device, the MSC3202 part of a failed transaction.
	E2EEPos     uint64            `json:"e2ee_pos,omitempty"`
	E2EESent    map[string]string `json:"e2ee_sent,omitempty"`
	PendingE2EE *e2eePart         `json:"pending_e2ee,omitempty"`
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
	// beforeWrite, when set (tests), runs before the follower's write;
	// an error fails that write.
	beforeWrite func() error
	// onQueueWrite, when set (tests), is told of each write of
	// ephemeral events and to-device messages (queueFor).
	onQueueWrite func(ids []string)

	mu      sync.Mutex
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	workers map[string]chan struct{} // wake channel of each running worker
	counts  map[string]int           // entries queued per appservice
	// handoffs are the batches the follower passed to idle workers
	// (handoff.go), writing the queueFor writes in progress, per
	// appservice.
	handoffs map[string]*handoff
	writing  map[string]int
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
	e2ee  e2eeState // MSC3202 data in transactions (e2ee.go)
}

// NewQueue returns the queue of reg's appservices; Start runs it.
func NewQueue(reg *Registry, db *store.DB, events Events, waiter Waiter) *Queue {
	q := &Queue{reg: reg, db: db, events: events, waiter: waiter, minBackoff: 5 * time.Second, maxBackoff: time.Hour,
		sendTimeout: requestTimeout, maxQueued: maxQueuedPerAS, workers: map[string]chan struct{}{}, counts: map[string]int{},
		handoffs: map[string]*handoff{}, writing: map[string]int{}}
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
			if st.PendingUpTo == 0 && st.PendingE2EE == nil { // (an ID skipped costs nothing)
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

// forget drops the count and hand-off of an appservice that was removed
// or added again: its entries went with its registration, and a new one
// gets nothing from before it (a worker that took the hand-off already
// records nothing for a registration no longer current).
func (q *Queue) forget(id string) {
	q.mu.Lock()
	delete(q.counts, id)
	delete(q.handoffs, id)
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
