package push

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
)

// Options tune a Service. The zero value is the production policy.
type Options struct {
	// AllowPrivateGateways lets pushers point at loopback and private
	// addresses. Only tests set it (their gateway listens on 127.0.0.1);
	// it is deliberately not a config setting.
	AllowPrivateGateways bool
	// RetryBase is the first retry delay after a failed delivery; it
	// doubles per attempt up to RetryMax. Defaults 2 s and 1 h.
	RetryBase, RetryMax time.Duration
	// MaxAttempts bounds the retries of one notification (default 16).
	MaxAttempts int
	Logger      *slog.Logger
}

// Service is push for one homeserver: rules, the evaluator that follows
// the stream, the notification log and the pushers with their queues.
type Service struct {
	Rules  *Rules
	db     *store.DB
	rooms  roomEngine
	eval   *Evaluator
	opts   Options
	client *http.Client
	log    *slog.Logger

	wake    chan struct{} // nudges the deliverer
	flush   chan struct{} // a waiter wants the evaluated results stored now
	counts  countCache
	running atomic.Bool

	doneMu  sync.Mutex
	donePos uint64        // the position the evaluator has stored results up to
	doneCh  chan struct{} // closed and replaced when donePos or memPos moves
	// pending are results evaluated but not yet stored, covering
	// (donePos, memPos]: /sync reads them instead of evaluating again.
	pending []evaluated
	memPos  uint64
	// early are results published at the commit of a room's batch
	// (early.go), in stream order, until the follower takes them.
	early []evaluated
	// released is a position the follower gave up evaluating for now (an
	// evaluation or store error): long polls waiting in Ready go on and
	// count those events themselves (Live).
	released uint64
	// readyPos is Ready's position, and readyCh is closed and replaced
	// when it moves: a store that only moves donePos past what was
	// published already wakes no long poll.
	readyPos uint64
	readyCh  chan struct{}

	deskMu   sync.Mutex
	desktop  Desktop
	deskOpts DesktopOptions
	ringing  ringing // calls ringing for the owner (ringing.go)
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	now      func() time.Time
}

// New returns the push service; Start runs its background work.
func New(db *store.DB, rooms roomEngine, opts Options) *Service {
	if opts.RetryBase <= 0 {
		opts.RetryBase = 2 * time.Second
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = time.Hour
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 16
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	rules := NewRules(db)
	s := &Service{Rules: rules, db: db, rooms: rooms, eval: NewEvaluator(rules, rooms.ServerName()),
		opts: opts, log: opts.Logger, wake: make(chan struct{}, 1), flush: make(chan struct{}, 1), now: time.Now, doneCh: make(chan struct{}), readyCh: make(chan struct{})}
	s.client = gatewayClient(opts.AllowPrivateGateways)
	return s
}

// Start runs the evaluator and the deliverer until Stop.
func (s *Service) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	if err := s.Rules.repairStoredJSON(ctx); err != nil {
		s.log.Warn("push: repair stored rules", "err", err)
	}
	// A previous run's published results (Stop, then Start) are not
	// this run's: it publishes again from the stored position.
	s.doneMu.Lock()
	s.pending, s.early, s.memPos = nil, nil, 0
	s.doneMu.Unlock()
	s.running.Store(true)
	if ep, ok := s.rooms.(earlyPusher); ok {
		ep.SetEarlyPush(s.earlyEvaluate)
	}
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.follow(ctx) }()
	go func() { defer s.wg.Done(); s.deliver(ctx) }()
}

// Stop ends the background work and waits for it; in-flight deliveries
// are cancelled and stay queued.
func (s *Service) Stop() {
	if s.cancel != nil {
		if ep, ok := s.rooms.(earlyPusher); ok {
			ep.SetEarlyPush(nil)
		}
		s.cancel()
		s.wg.Wait()
		s.running.Store(false)
		s.release(0) // waiters in Ready see the evaluator gone
	}
}

var keyPos = []byte("pos")

// follow evaluates every new event as the stream advances. It waits on the
// notifier, never polls, and keeps its position in bbolt so that after a
// restart it catches up on what it missed. A new file (no position yet)
// starts at the current position: history from before push existed is
// not notified.
func (s *Service) follow(ctx context.Context) {
	// However it ends (Stop, or an error it cannot get past), nothing will
	// publish results any more: long polls waiting in Ready go back to
	// waiting for the commit, and /sync counts for itself (Live).
	defer func() {
		s.running.Store(false)
		s.release(0)
	}()
	var pos uint64
	s.db.View(func(tx *store.Tx) error {
		pos = store.U64(tx.Get(store.PushMeta, keyPos))
		return nil
	})
	if pos == 0 {
		// Record the starting point at once, so that events written before
		// the first evaluation are not skipped after a crash.
		err := s.db.Update(ctx, func(tx *store.Tx) error {
			if pos = store.U64(tx.Get(store.PushMeta, keyPos)); pos == 0 {
				pos = tx.Pos()
				return tx.Put(store.PushMeta, keyPos, store.PutU64(pos))
			}
			return nil
		})
		if err != nil {
			s.log.Error("push: record start position", "err", err)
			return
		}
	}
	s.processed(pos)
	var (
		// unstored are the results evaluated and published, not yet
		// stored; the first inflight of them are being stored now.
		unstored []evaluated
		evalPos  = pos     // the position evaluation has reached
		since    time.Time // when the oldest result not in flight was evaluated
		urgent   bool      // a result not in flight is to be delivered to a pusher
		held     int       // results in unstored[inflight:]
		inflight int
		storing  *storeRun // the store in flight, nil if none
	)
	defer func() {
		if storing != nil {
			<-storing.done // Stop waits for the write it started
		}
	}()
	for {
		if storing != nil && storing.finished() {
			if err := storing.err; err != nil {
				storing, inflight, held = nil, 0, countResults(unstored)
				if ctx.Err() != nil {
					return
				}
				s.log.Error("push: store", "from", pos, "err", err)
				urgent = true // store them again, after news
				cur, eph := s.rooms.Pos()
				s.release(cur)
				if err := s.rooms.Wait(ctx, cur, eph); err != nil {
					return
				}
				continue
			}
			// The store moved the stored position itself (processed), at
			// its commit; the follower only drops what it held.
			unstored, pos = unstored[inflight:], storing.pos
			storing, inflight = nil, 0
			if len(unstored) > 0 {
				since = time.Now()
			}
		}
		cur, eph := s.rooms.Pos()
		full := len(unstored)-inflight >= batchSize || held >= batchResults // one commit's worth
		if cur > evalPos && !full {
			batch, next, err := s.evaluateBatch(evalPos, cur)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Error("push: evaluate", "from", evalPos, "err", err)
				if len(unstored) == 0 {
					// The same batch would fail again at once; wait for
					// news. Long polls waiting for these results go on.
					s.release(cur)
					if err := s.rooms.Wait(ctx, cur, eph); err != nil {
						return
					}
					continue
				}
				urgent = true // store what is held rather than wait with it
				if storing != nil {
					// The same batch would fail again at once: wait for
					// the store in flight first, not spin until it ends.
					select {
					case <-storing.done:
					case <-ctx.Done():
						return
					}
					continue
				}
			} else {
				if len(unstored) == inflight { // the first result not in flight
					since = time.Now()
				}
				unstored, evalPos = append(unstored, batch...), next
				held += countResults(batch)
				full = len(unstored)-inflight >= batchSize || held >= batchResults
				s.publish(unstored, evalPos)
				if !urgent {
					if urgent, err = s.storeNow(batch); err != nil {
						s.log.Error("push: find recipients with pushers", "err", err)
						urgent = true
					}
				}
			}
		}
		if evalPos > pos && len(unstored) == 0 {
			// Nothing evaluated (no event push considers) and nothing in
			// flight: nothing to store, and no commit for the position
			// alone.
			pos = evalPos
			s.processed(pos)
			continue
		}
		if storing != nil {
			// One store at a time, in order. Meanwhile evaluate what
			// arrives, so that a message committed during the store's
			// fsync is published at once: long polls wait for its count
			// (docs/performance.md, "Delivery: counts at commit and a
			// shared room section").
			if cur > evalPos && !full {
				continue
			}
			s.waitFollow(ctx, 0, cur, eph, storing.done, false)
			if ctx.Err() != nil {
				return
			}
			continue
		}
		if evalPos > pos {
			wait := storeDelay - time.Since(since)
			flushed := false
			select {
			case <-s.flush:
				flushed = true
			default:
			}
			if urgent || flushed || wait <= 0 || full {
				storing = s.startStore(ctx, unstored[:len(unstored):len(unstored)], evalPos)
				inflight, held, urgent = len(unstored), 0, false
				continue
			}
			if cur > evalPos {
				continue // evaluate what has arrived meanwhile
			}
			// Wait for more events, a flush request or the deadline.
			s.waitFollow(ctx, wait, cur, eph, nil, true)
			if ctx.Err() != nil {
				return
			}
			continue
		}
		if err := s.rooms.Wait(ctx, cur, eph); err != nil {
			return
		}
	}
}

// storeGate, when set (by tests), runs at the start of every store: it
// holds a store open to show what the follower does meanwhile.
var storeGate atomic.Pointer[func()]

// evalGate, when set (by tests), runs at the start of every evaluation by
// the follower: it holds the follower back to show what is published
// without it.
var evalGate atomic.Pointer[func()]

// storeRun is one store of held results, running beside the follower.
type storeRun struct {
	pos  uint64
	done chan struct{} // closed when err is final
	err  error
}

func (r *storeRun) finished() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// startStore stores batch up to pos from a goroutine of its own, so that
// the follower goes on evaluating and publishing while the write and its
// fsync run: a message committed meanwhile used to wait for the store
// (docs/performance.md, "Delivery: the critical path", what was left).
// On success the stored position moves at once (processed), which is
// what WaitEvaluated's callers wait for.
func (s *Service) startStore(ctx context.Context, batch []evaluated, pos uint64) *storeRun {
	r := &storeRun{pos: pos, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		if r.err = s.store(ctx, batch, pos); r.err == nil {
			s.processed(pos)
		}
	}()
	return r
}

// waitFollow waits until the stream moves past (cur, eph), ctx ends, the
// timeout d (if positive) passes, stored is closed (if not nil), or, with
// flushes, someone asks for the held results to be stored.
func (s *Service) waitFollow(ctx context.Context, d time.Duration, cur, eph uint64, stored <-chan struct{}, flushes bool) {
	wctx, cancel := context.WithCancel(ctx)
	if d > 0 {
		wctx, cancel = context.WithTimeout(ctx, d)
	}
	defer cancel()
	var flush <-chan struct{}
	if flushes {
		flush = s.flush
	}
	go func() {
		select {
		case <-flush:
			s.askToStore() // for the loop to see
			cancel()
		case <-stored:
			cancel()
		case <-wctx.Done():
		}
	}()
	s.rooms.Wait(wctx, cur, eph)
}

func countResults(batch []evaluated) int {
	n := 0
	for _, e := range batch {
		n += len(e.results)
	}
	return n
}

// storeDelay is how long evaluated results may wait in memory for more
// before they are stored, while events keep arriving: a federation peer
// sends a transaction every few milliseconds, and one commit for several
// transactions' notifications costs the store's single writer less than
// one per transaction, which it would spend while the next transaction
// waits for its own commit (issue 15). Nobody waits for the store as long
// as results are in memory: /sync reads them there (Live), and whatever
// needs them stored asks for it (WaitEvaluated, Notifications); a
// notification to deliver to a pusher is stored, and so queued, at once.
const storeDelay = 50 * time.Millisecond

// askToStore asks the follower to store the results it holds now; the
// follower's waiting goroutine also uses it to hand a request it took on
// to the loop.
func (s *Service) askToStore() {
	select {
	case s.flush <- struct{}{}:
	default:
	}
}

// storeNow reports whether evaluated results must be stored without
// waiting: one of them is for a user with a pusher (delivery is queued in
// the same commit).
func (s *Service) storeNow(batch []evaluated) (bool, error) {
	found := false
	err := s.db.View(func(tx *store.Tx) error {
		c := tx.Cursor(store.Pushers)
		seen := map[string]bool{}
		for _, e := range batch {
			for _, r := range e.results {
				if seen[r.UserID] {
					continue
				}
				seen[r.UserID] = true
				prefix := store.Key(r.UserID, "")
				if k, _ := c.Seek(prefix); k != nil && hasPrefix(k, prefix) {
					found = true
					return nil
				}
			}
		}
		return nil
	})
	return found, err
}

func (s *Service) evaluated() uint64 {
	s.doneMu.Lock()
	defer s.doneMu.Unlock()
	return s.donePos
}

func (s *Service) processed(pos uint64) {
	s.doneMu.Lock()
	defer s.doneMu.Unlock()
	if pos > s.donePos {
		s.donePos = pos
		// What is stored now leaves pending; results published after the
		// store began stay (the store runs beside the follower).
		keep := s.pending[:0:0]
		for _, e := range s.pending {
			if e.pe.Pos > pos {
				keep = append(keep, e)
			}
		}
		s.pending = keep
		close(s.doneCh)
		s.doneCh = make(chan struct{})
		s.moveReady()
	}
}

// publish makes a batch's results visible to /sync before they are
// stored: the commit (and its fsync) would otherwise delay every count.
func (s *Service) publish(batch []evaluated, upto uint64) {
	s.doneMu.Lock()
	defer s.doneMu.Unlock()
	// Results published early past upto stay (early.go); the three-index
	// slice keeps the follower's own slice from being appended to.
	s.pending, s.memPos = append(batch[:len(batch):len(batch)], s.earlyAfter(upto)...), max(s.memPos, upto)
	close(s.doneCh)
	s.doneCh = make(chan struct{})
	s.moveReady()
}

// moveReady wakes Ready's waiters if its position moved; doneMu is held.
func (s *Service) moveReady() {
	if r := max(s.donePos, s.memPos, s.released); r > s.readyPos {
		s.readyPos = r
		close(s.readyCh)
		s.readyCh = make(chan struct{})
	}
}

// release lets long polls waiting in Ready go on up to pos without the
// results of the events there (after an error: they count them
// themselves), and wakes every waiter.
func (s *Service) release(pos uint64) {
	s.doneMu.Lock()
	defer s.doneMu.Unlock()
	s.released = max(s.released, pos)
	close(s.doneCh)
	s.doneCh = make(chan struct{})
	s.readyPos = max(s.readyPos, pos)
	close(s.readyCh) // always: Stop uses it to say the evaluator is gone
	s.readyCh = make(chan struct{})
}

// Ready returns the stream position up to which the evaluator has
// published the results of every event (or given up on them, see
// release), and a channel closed when that may have moved; ok is false
// when the evaluator is not running, and nothing would move it. A /sync
// long poll waits on this instead of the commit itself (docs/architecture.md,
// "/sync"): woken together by the commit, a room's 50 long polls used to
// take both cores only to park again for these results, delaying the
// evaluator they were waiting for (docs/performance.md, "Delivery: the
// critical path").
func (s *Service) Ready() (pos uint64, changed <-chan struct{}, ok bool) {
	if !s.running.Load() {
		return 0, nil, false
	}
	s.doneMu.Lock()
	defer s.doneMu.Unlock()
	return s.readyPos, s.readyCh, true
}

// inMemory reports whether results up to pos are stored or published.
func (s *Service) inMemory(pos uint64) bool {
	s.doneMu.Lock()
	defer s.doneMu.Unlock()
	return s.donePos >= pos || s.memPos >= pos
}

// waitInMemory waits until results up to pos are stored or published.
func (s *Service) waitInMemory(ctx context.Context, pos uint64) {
	for {
		s.doneMu.Lock()
		ok, ch := s.donePos >= pos || s.memPos >= pos, s.doneCh
		s.doneMu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

// WaitEvaluated blocks until the evaluator has stored the results of every
// event up to pos, or ctx ends. Tests and the benchmark use it to know
// when counts are final without sleeping.
func (s *Service) WaitEvaluated(ctx context.Context, pos uint64) error {
	if !s.running.Load() {
		return nil // nothing would ever advance it
	}
	s.askToStore() // results held for a larger commit are stored now
	for {
		s.doneMu.Lock()
		done, ch := s.donePos, s.doneCh
		s.doneMu.Unlock()
		if done >= pos {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// batchSize and batchResults bound the events evaluated, and the
// notifications stored, per write transaction: bbolt splits nodes only at
// commit, so one huge transaction turns its inserts quadratic.
const (
	batchSize    = 256
	batchResults = 16384
)

var errBatchFull = errors.New("batch full")

type evaluated struct {
	pe      *room.PushEvent
	results []Result
}

// evaluateBatch evaluates events in (from, to], up to batchSize of them,
// and returns the results and the position it got to.
func (s *Service) evaluateBatch(from, to uint64) ([]evaluated, uint64, error) {
	if g := evalGate.Load(); g != nil {
		(*g)()
	}
	var batch []evaluated
	done, results := to, 0
	err := s.rooms.PushEventsAfter(from, to, func(pe *room.PushEvent) error {
		if len(batch) == batchSize || results >= batchResults {
			done = pe.Pos - 1
			return errBatchFull
		}
		res, ok := s.takeEarly(pe)
		if !ok {
			var err error
			if res, err = s.eval.Evaluate(pe); err != nil {
				return err
			}
		}
		batch = append(batch, evaluated{pe, res})
		results += len(res)
		return nil
	})
	if err != nil && !errors.Is(err, errBatchFull) {
		return nil, from, err
	}
	return batch, done, nil
}

// store stores the notifications of evaluated events up to pos, queues
// their deliveries and moves the stored position, in one commit.
func (s *Service) store(ctx context.Context, batch []evaluated, pos uint64) error {
	if g := storeGate.Load(); g != nil {
		(*g)()
	}
	unread, err := s.unreadTotals(batch)
	if err != nil {
		return err
	}
	ts := s.now().UnixMilli()
	err = s.db.Update(ctx, func(tx *store.Tx) error {
		// unread is counted on from its value before the batch on every
		// run of this function (the store may run it twice).
		counts := maps.Clone(unread)
		for _, e := range batch {
			records := recordEncoder{}
			for _, r := range e.results {
				rec := records.encode(e.pe, r, ts)
				if err := tx.Put(store.PushLog, logKey(r.UserID, e.pe.RoomID, e.pe.Pos), rec); err != nil {
					return err
				}
				if _, ok := counts[r.UserID]; ok {
					counts[r.UserID]++
					if err := s.enqueueTx(tx, e.pe, r, counts[r.UserID]); err != nil {
						return err
					}
				}
			}
		}
		return tx.Put(store.PushMeta, keyPos, store.PutU64(pos))
	})
	if err != nil {
		return fmt.Errorf("push: store notifications: %w", err)
	}
	if len(batch) == 0 {
		return nil
	}
	s.toDesktop(batch)
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// unreadTotals returns, for each recipient in the batch who has pushers,
// their unread notification count over all rooms before the batch; the
// gateway shows it as the badge (Push Gateway API counts.unread).
func (s *Service) unreadTotals(batch []evaluated) (map[string]int, error) {
	// Whom to count: the recipients with a pusher, found in one read
	// transaction (a message in a room of 32 members has 31 recipients,
	// and most people have no pusher on a personal server).
	counted := map[string]bool{}
	err := s.db.View(func(tx *store.Tx) error {
		c := tx.Cursor(store.Pushers)
		for _, e := range batch {
			for _, r := range e.results {
				if _, seen := counted[r.UserID]; seen {
					continue
				}
				prefix := store.Key(r.UserID, "")
				k, _ := c.Seek(prefix)
				counted[r.UserID] = k != nil && hasPrefix(k, prefix)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for userID, has := range counted {
		if !has {
			continue
		}
		n, err := s.unread(userID)
		if err != nil {
			return nil, err
		}
		out[userID] = n
	}
	return out, nil
}

// unread counts a user's unread notifications in every room.
func (s *Service) unread(userID string) (int, error) {
	var rooms []string
	err := s.db.View(func(tx *store.Tx) error {
		rooms = loggedRooms(tx, userID)
		return nil
	})
	if err != nil {
		return 0, err
	}
	total := 0
	for _, roomID := range rooms {
		c, err := s.Counts(userID, roomID, nil)
		if err != nil {
			return 0, err
		}
		total += c.All.Notifications
	}
	return total, nil
}

// processBatch evaluates events in (from, to], up to batchSize of them,
// and stores the results at once; it returns the position it got to.
// The follower holds results for a larger commit (follow); the
// benchmarks measure one batch's evaluation and commit with it.
func (s *Service) processBatch(ctx context.Context, from, to uint64) (uint64, error) {
	batch, done, err := s.evaluateBatch(from, to)
	if err != nil || len(batch) == 0 {
		return done, err
	}
	if err := s.store(ctx, batch, done); err != nil {
		return from, err
	}
	return done, nil
}

// storeEvaluated waits, briefly, until the results evaluated so far are
// stored, asking the follower to store them now: for readers of the
// notification log itself (GET /notifications), which would otherwise
// miss results held in memory for a larger commit.
func (s *Service) storeEvaluated() {
	if !s.running.Load() {
		return
	}
	s.doneMu.Lock()
	mem, done := s.memPos, s.donePos
	s.doneMu.Unlock()
	if mem <= done {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s.WaitEvaluated(ctx, mem)
}
