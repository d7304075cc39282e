// Package queue owns federation's persistent per-destination outbound
// queues (Server-Server API §"Transactions"). A consumer follows the
// store's stream and, in the same write that moves its position, queues
// each event this server must send once per destination; EDUs are queued
// through SendEDU. One worker per destination with work sends its queue
// in order, one transaction at a time (≤ 50 PDUs, ≤ 100 EDUs), deletes
// what the remote acknowledged and backs off on failure. Everything
// queued lives in bbolt, so nothing is lost across a restart.
package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
)

// Events is the room engine as the queue uses it (*room.Engine).
type Events interface {
	OutboundEvents(tx *store.Tx, after, upTo uint64, fn func(room.Outbound) error) error
	EventJSON(tx *store.Tx, nid uint64) ([]byte, error)
}

// Waiter is the stream notifier (*stream.Notifier or *room.Engine).
type Waiter interface {
	Pos() (pos, ephemeral uint64)
	Wait(ctx context.Context, pos, ephemeral uint64) error
}

// Sender sends one transaction; fclient.FederationClient satisfies it.
type Sender interface {
	SendTransaction(ctx context.Context, t gomatrixserverlib.Transaction) (fclient.RespSend, error)
}

// Destination is one remote server's queue, for the control API.
type Destination struct {
	Name      string
	Queued    int // PDUs and EDUs waiting
	Failures  int // consecutive failed sends
	LastError string
	NextTry   time.Time // zero: no backoff
	LastSent  time.Time // last acknowledged transaction
}

// Limits of one transaction (Server-Server API §"Transactions").
const (
	maxPDUs = 50
	maxEDUs = 100
)

// Queue is the outbound queues of one server.
type Queue struct {
	db     *store.DB
	events Events
	waiter Waiter
	sender Sender
	origin spec.ServerName

	// Tunables; tests shorten them.
	now         func() time.Time
	minBackoff  time.Duration
	maxBackoff  time.Duration
	sendTimeout time.Duration

	mu      sync.Mutex
	running bool
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	epoch   string
	dests   map[string]*dest
	// scanned is how far the follower has looked without finding
	// anything to queue; only the follower touches it. The stored
	// position lags behind it until there is something to write, which
	// spares a commit per commit when nothing goes to other servers (a
	// restart merely looks at those events again).
	scanned uint64
	// onJoin announces a local user's devices after their join (follow.go).
	onJoin func(ctx context.Context, userID string, destinations []string)
}

// dest is one destination's in-memory state; fields are guarded by
// Queue.mu except retry, which only its worker touches.
type dest struct {
	name    string
	st      destState
	txnNext uint64        // next txn counter; < st.TxnReserved once reserved
	active  bool          // a worker is running
	pending bool          // something was queued since the worker last looked
	nudge   bool          // send a transaction even if the queue is empty
	wake    chan struct{} // buffered 1: new work or a reset backoff
	retry   *batch        // the batch that failed, resent with the same txn ID
	// woken: Wake was called while an attempt was in flight; if it
	// fails, the next one goes at once (the reason for the Wake, e.g. a
	// peer back on the LAN, came after the attempt began).
	woken bool
}

// New returns the queue; Start begins consuming and sending. origin is
// this server's name.
func New(db *store.DB, events Events, waiter Waiter, sender Sender, origin spec.ServerName) *Queue {
	return &Queue{db: db, events: events, waiter: waiter, sender: sender, origin: origin,
		now: time.Now, minBackoff: 5 * time.Second, maxBackoff: time.Hour, sendTimeout: 60 * time.Second,
		dests: map[string]*dest{}}
}

// Start loads the stored queues and starts the consumer and a worker for
// every destination with something queued. The store must stay open
// until Stop returns. A stored backoff is honoured (WakeAll ends it).
func (q *Queue) Start() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.running {
		return
	}
	// Destination state is installed before any worker can run, so no
	// worker hands out a txn counter the stored state has already used.
	var epoch string
	var states map[string]destState
	err := q.db.Update(context.Background(), func(tx *store.Tx) error {
		if err := ensureMeta(tx); err != nil {
			return err
		}
		epoch = string(tx.Get(store.FedMeta, keyEpoch))
		var err error
		states, err = loadStates(tx)
		return err
	})
	if err != nil {
		slog.Error("federation queue: load", "err", err)
	}
	q.epoch = epoch
	for name, st := range states {
		d := q.destLocked(name)
		d.st, d.txnNext = st, st.TxnReserved
		if d.nudge {
			d.st.NextTry = 0
		}
	}
	q.ctx, q.cancel = context.WithCancel(context.Background())
	q.running = true

	// Entries queued from here on kick their destination themselves.
	q.db.View(func(tx *store.Tx) error {
		c := tx.Cursor(store.FedQueue)
		for k, _ := c.First(); k != nil; {
			d := destOfKey(k)
			q.kickLocked(d)
			k, _ = c.Seek(append([]byte(d), 1)) // past this destination's entries
		}
		return nil
	})
	for name, d := range q.dests {
		if d.nudge {
			q.kickLocked(name)
		}
	}
	ctx := q.ctx
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		if err := q.follow(ctx); err != nil && ctx.Err() == nil {
			slog.Error("federation queue: consumer stopped", "err", err)
		}
	}()
}

// Stop cancels in-flight sends and waits for the consumer and workers.
// Whatever a remote did not acknowledge stays queued for the next Start.
func (q *Queue) Stop() {
	q.mu.Lock()
	if !q.running {
		q.mu.Unlock()
		return
	}
	q.running = false
	q.cancel()
	q.mu.Unlock()
	q.wg.Wait()
}

// SendEDU queues edu for each destination, in one write; it returns once
// the EDU is durable. This server and empty names are skipped.
func (q *Queue) SendEDU(ctx context.Context, destinations []string, edu gomatrixserverlib.EDU) error {
	content := json.RawMessage(edu.Content)
	if len(content) == 0 {
		content = json.RawMessage("{}")
	}
	if edu.Type == "" || !json.Valid(content) {
		return fmt.Errorf("queue: EDU %q has no type or invalid content", edu.Type)
	}
	rec, err := json.Marshal(eduRecord{Type: edu.Type, Content: content})
	if err != nil {
		return fmt.Errorf("queue: encode EDU: %w", err)
	}
	v := append([]byte{kindEDU}, rec...)
	dests := q.remote(destinations)
	if len(dests) == 0 {
		return nil
	}
	err = q.db.Update(ctx, func(tx *store.Tx) error {
		for _, d := range dests {
			if err := putEntry(tx, d, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue: %s EDU: %w", edu.Type, err)
	}
	for _, d := range dests {
		q.kick(d)
	}
	return nil
}

// remote returns names without duplicates, empty names and this server.
func (q *Queue) remote(names []string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		if n != "" && n != string(q.origin) && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// Wake tells the queue that destination is up (it just sent us a
// request): its backoff ends and anything queued is sent now.
func (q *Queue) Wake(destination string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if d := q.dests[destination]; d != nil {
		d.st.Failures, d.st.NextTry = 0, 0
		d.woken = true
		q.kickLocked(destination)
	}
}

// WakeAll ends every destination's backoff and sends whatever is queued
// (the network changed or the machine woke).
func (q *Queue) WakeAll() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for name, d := range q.dests {
		d.st.Failures, d.st.NextTry = 0, 0
		q.kickLocked(name)
	}
}

// Nudge sends one transaction to each destination now, an empty one
// (pdus: []) if nothing is queued, so a remote that backed off from us
// learns we are back and ends its own backoff (it calls Wake for us).
// One attempt: a failed nudge is not retried, and nudges are not stored.
func (q *Queue) Nudge(destinations []string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, name := range q.remote(destinations) {
		d := q.destLocked(name)
		d.nudge, d.st.NextTry = true, 0
		q.kickLocked(name)
	}
}

// Status lists every destination the queue knows, by name.
func (q *Queue) Status() []Destination {
	counts := map[string]int{}
	q.db.View(func(tx *store.Tx) error {
		c := tx.Cursor(store.FedQueue)
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			counts[destOfKey(k)]++
		}
		return nil
	})
	q.mu.Lock()
	defer q.mu.Unlock()
	for name := range counts {
		q.destLocked(name)
	}
	out := make([]Destination, 0, len(q.dests))
	for name, d := range q.dests {
		out = append(out, Destination{Name: name, Queued: counts[name], Failures: d.st.Failures,
			LastError: d.st.LastError, NextTry: fromMS(d.st.NextTry), LastSent: fromMS(d.st.LastSent)})
	}
	slices.SortFunc(out, func(a, b Destination) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (q *Queue) destLocked(name string) *dest {
	d := q.dests[name]
	if d == nil {
		d = &dest{name: name, wake: make(chan struct{}, 1)}
		q.dests[name] = d
	}
	return d
}

// kick tells destination's worker there is work, starting it if needed.
func (q *Queue) kick(name string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.kickLocked(name)
}

func (q *Queue) kickLocked(name string) {
	d := q.destLocked(name)
	d.pending = true
	select {
	case d.wake <- struct{}{}:
	default:
	}
	if q.running && !d.active {
		d.active = true
		q.wg.Add(1)
		go q.work(q.ctx, d)
	}
}
