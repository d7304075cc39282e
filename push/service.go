package push

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

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
	prunedAt atomic.Int64 // UnixNano of the log's last prune (prune.go), 0: none yet
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
