package push

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	counts  countCache
	running atomic.Bool

	doneMu  sync.Mutex
	donePos uint64        // the position the evaluator has stored results up to
	doneCh  chan struct{} // closed and replaced when donePos or memPos moves
	// pending are results evaluated but not yet stored, covering
	// (donePos, memPos]: /sync reads them instead of evaluating again.
	pending []evaluated
	memPos  uint64

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
		opts: opts, log: opts.Logger, wake: make(chan struct{}, 1), now: time.Now, doneCh: make(chan struct{})}
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
	s.running.Store(true)
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.follow(ctx) }()
	go func() { defer s.wg.Done(); s.deliver(ctx) }()
}

// Stop ends the background work and waits for it; in-flight deliveries
// are cancelled and stay queued.
func (s *Service) Stop() {
	if s.cancel != nil {
		s.cancel()
		s.wg.Wait()
		s.running.Store(false)
	}
}

var keyPos = []byte("pos")

// follow evaluates every new event as the stream advances. It waits on the
// notifier, never polls, and keeps its position in bbolt so that after a
// restart it catches up on what it missed. A new file (no position yet)
// starts at the current position: history from before push existed is
// not notified.
func (s *Service) follow(ctx context.Context) {
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
	for {
		cur, eph := s.rooms.Pos()
		if cur > pos {
			next, err := s.processBatch(ctx, pos, cur)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Error("push: evaluate", "from", pos, "err", err)
				// The same batch would fail again at once; wait for news.
			} else {
				pos = next
				s.processed(pos)
				continue
			}
		}
		if err := s.rooms.Wait(ctx, cur, eph); err != nil {
			return
		}
	}
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
		s.pending = nil // stored now
		close(s.doneCh)
		s.doneCh = make(chan struct{})
	}
}

// publish makes a batch's results visible to /sync before they are
// stored: the commit (and its fsync) would otherwise delay every count.
func (s *Service) publish(batch []evaluated, upto uint64) {
	s.doneMu.Lock()
	defer s.doneMu.Unlock()
	s.pending, s.memPos = batch, upto
	close(s.doneCh)
	s.doneCh = make(chan struct{})
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

// processBatch evaluates events in (from, to], up to batchSize of them,
// stores the notifications and queues deliveries; it returns the position
// it got to.
func (s *Service) processBatch(ctx context.Context, from, to uint64) (uint64, error) {
	var batch []evaluated
	done, results := to, 0
	err := s.rooms.PushEventsAfter(from, to, func(pe *room.PushEvent) error {
		if len(batch) == batchSize || results >= batchResults {
			done = pe.Pos - 1
			return errBatchFull
		}
		res, err := s.eval.Evaluate(pe)
		if err != nil {
			return err
		}
		batch = append(batch, evaluated{pe, res})
		results += len(res)
		return nil
	})
	if err != nil && !errors.Is(err, errBatchFull) {
		return from, err
	}
	if len(batch) == 0 {
		return done, nil
	}
	s.publish(batch, done)
	unread, err := s.unreadTotals(batch)
	if err != nil {
		return from, err
	}
	ts := s.now().UnixMilli()
	err = s.db.Update(ctx, func(tx *store.Tx) error {
		for _, e := range batch {
			records := recordEncoder{}
			for _, r := range e.results {
				rec := records.encode(e.pe, r, ts)
				if err := tx.Put(store.PushLog, logKey(r.UserID, e.pe.RoomID, e.pe.Pos), rec); err != nil {
					return err
				}
				if _, ok := unread[r.UserID]; ok {
					unread[r.UserID]++
					if err := s.enqueueTx(tx, e.pe, r, unread[r.UserID]); err != nil {
						return err
					}
				}
			}
		}
		return tx.Put(store.PushMeta, keyPos, store.PutU64(done))
	})
	if err != nil {
		return from, fmt.Errorf("push: store notifications: %w", err)
	}
	s.toDesktop(batch)
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return done, nil
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
