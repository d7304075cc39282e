// Package delayed owns the delayed events of MSC4140 ("Cancellable delayed
// events"): a client schedules an event to be sent later, the server sends
// it as that user when its delay runs out unless it was cancelled,
// restarted (the timer starts again) or sent at once.
//
// Scheduled and finalised delayed events live in the store (buckets
// delayed, delayeddue, delayeduser, delayedtxns; see internal/store), so
// they survive a restart: at Start, events that came due while the daemon
// was down are sent at once. One timer is armed for the earliest due event
// and re-armed after every change; there is no ticker and no goroutine per
// event, so an idle daemon with scheduled events wakes only when one is
// due.
//
// An event is sent through the room engine (Sender) with the checks of a
// normal send at that moment: power levels and membership are evaluated
// then, not when it was scheduled (MSC4140 "Power levels are evaluated at
// the point of sending"). If that fails the event is finalised with the
// error and never retried. The package never imports the HTTP layer; its
// errors are matrixerr values the handlers pass on.
package delayed

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
)

// Session is the client session delayed events are sent under. The room
// engine scopes transaction IDs by session; with this one, the txn ID of
// a delayed event ("msc4140 " + delay ID) makes a send that a crash cut
// short idempotent when it is sent again at the next start, and no
// client's device ever sees it as its own transaction_id.
const Session = room.DelayedSession

// Sender sends an event as a user; *room.Engine is one.
type Sender interface {
	Send(ctx context.Context, req room.SendRequest) (string, error)
}

// Config sets the limits. Zero values take the defaults.
type Config struct {
	// MaxDelay is the longest delay accepted; 0 disables delayed events.
	MaxDelay time.Duration
	// MaxScheduled is how many scheduled delayed events one user may have
	// at once (MSC4140 asks for a limit); 100 when zero.
	MaxScheduled int
	// KeepFinalised is how many finalised events per user are kept for
	// GET /delayed_events, KeepFor how long (the MSC recommends up to
	// 1000 and 7 days; 100 and 7 days when zero).
	KeepFinalised int
	KeepFor       time.Duration
	// Now is the clock; time.Now when nil. Tests set it only to read
	// timestamps, never to fake the passing of time.
	Now func() time.Time
}

// Service schedules, stores and sends delayed events.
type Service struct {
	db   *store.DB
	send Sender
	cfg  Config

	ctx    context.Context // ends at Close: sends in flight give up and stay scheduled
	cancel context.CancelFunc

	mu       sync.Mutex
	timer    *time.Timer
	started  bool
	closed   bool
	firing   bool                     // a goroutine is sending due events
	firingWG sync.WaitGroup           // that goroutine, for Close
	again    bool                     // the timer fired while firing: look again
	inflight map[string]chan struct{} // delay IDs being sent, closed when done
	// pausedUntil holds sending back after an outcome could not be
	// recorded (a full disk): the event is still due, and sending it
	// again at once would spin.
	pausedUntil time.Time
}

// New makes the service; Start begins sending.
func New(db *store.DB, send Sender, cfg Config) *Service {
	if cfg.MaxScheduled <= 0 {
		cfg.MaxScheduled = 100
	}
	if cfg.KeepFinalised <= 0 {
		cfg.KeepFinalised = 100
	}
	if cfg.KeepFor <= 0 {
		cfg.KeepFor = 7 * 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{db: db, send: send, cfg: cfg, ctx: ctx, cancel: cancel, inflight: map[string]chan struct{}{}}
	return s
}

// Enabled reports whether delayed events may be scheduled.
func (s *Service) Enabled() bool { return s != nil && s.cfg.MaxDelay > 0 }

// MaxDelay is the longest delay accepted.
func (s *Service) MaxDelay() time.Duration { return s.cfg.MaxDelay }

// Start forgets finalised events past their retention and arms the timer;
// events that came due while the daemon was down are sent at once. It runs
// whether or not scheduling is enabled: events scheduled before the
// feature was turned off are still sent (or cancelled by their owner).
func (s *Service) Start() error {
	if err := s.pruneAll(); err != nil {
		return err
	}
	s.mu.Lock()
	s.started = true
	s.timer = time.AfterFunc(time.Hour, s.fire)
	s.timer.Stop()
	s.mu.Unlock()
	s.rearm()
	return nil
}

// Close stops the timer and waits for the sends in flight; what has not
// been sent stays scheduled for the next start.
func (s *Service) Close() {
	s.mu.Lock()
	s.closed = true
	if s.timer != nil {
		s.timer.Stop()
	}
	s.mu.Unlock()
	s.cancel()
	s.firingWG.Wait()
}

func (s *Service) nowMs() int64 { return s.cfg.Now().UnixMilli() }

// Request is what a client asks to schedule.
type Request struct {
	UserID   string
	Session  string // the client session, scope of TxnID
	TxnID    string // empty for state events
	RoomID   string
	Type     string
	StateKey *string
	Content  json.RawMessage
	Delay    int64 // ms
}

// ErrMaxDelay is the answer to a delay over the maximum: 400 with the
// errcode Element Call's matrix-js-sdk checks while MSC4140 is unstable
// (M_UNKNOWN carrying org.matrix.msc4140.errcode M_MAX_DELAY_EXCEEDED and
// org.matrix.msc4140.max_delay, the MSC's "Unstable prefix" section), and
// the stable max_delay too.
func ErrMaxDelay(max time.Duration) *matrixerr.Error {
	return &matrixerr.Error{Status: http.StatusBadRequest, Code: "M_UNKNOWN",
		Message: fmt.Sprintf("the requested delay exceeds the allowed maximum of %d ms", max.Milliseconds()),
		Extra: map[string]any{"org.matrix.msc4140.errcode": "M_MAX_DELAY_EXCEEDED",
			"org.matrix.msc4140.max_delay": max.Milliseconds(), "max_delay": max.Milliseconds()}}
}

// maxContentBytes bounds a delayed event's content: it must still fit an
// event (65536 bytes with its envelope) when it is sent.
const maxContentBytes = 65536

// Schedule stores a delayed event and returns its delay ID. A repeated
// transaction (same user, session, txn ID, room and type) returns the
// first one's ID.
func (s *Service) Schedule(ctx context.Context, req Request) (string, error) {
	if !s.Enabled() {
		return "", matrixerr.Forbidden("delayed events are disabled on this server")
	}
	if req.Delay <= 0 {
		return "", matrixerr.InvalidParam("delay must be a positive number of milliseconds")
	}
	if req.Delay > s.cfg.MaxDelay.Milliseconds() {
		return "", ErrMaxDelay(s.cfg.MaxDelay)
	}
	if req.Type == "" || len(req.Type) > 255 || (req.StateKey != nil && len(*req.StateKey) > 255) {
		return "", matrixerr.InvalidParam("event type and state key must be 1 to 255 bytes")
	}
	if len(req.Content) > maxContentBytes {
		return "", matrixerr.TooLarge("event content is larger than an event may be")
	}
	if len(req.Content) == 0 {
		req.Content = json.RawMessage("{}")
	}
	id, err := newID()
	if err != nil {
		return "", err
	}
	e := &Event{ID: id, UserID: req.UserID, Session: req.Session, TxnID: req.TxnID, RoomID: req.RoomID,
		Type: req.Type, StateKey: req.StateKey, Content: req.Content, Delay: req.Delay}
	var got string
	err = s.db.Update(ctx, func(tx *store.Tx) error {
		got = ""
		if req.TxnID != "" {
			if v := tx.Get(store.DelayedTxns, txnKey(e)); v != nil {
				got = string(v)
				return nil
			}
		}
		mine, err := userEvents(tx, req.UserID)
		if err != nil {
			return err
		}
		now := s.nowMs()
		var scheduled int
		next := int64(-1)
		for _, m := range mine {
			if m.Scheduled() {
				scheduled++
				if next < 0 || m.Due() < next {
					next = m.Due()
				}
			}
		}
		if scheduled >= s.cfg.MaxScheduled {
			// MSC4140: 429 with the time until the user's next event is
			// sent, when a slot frees.
			return matrixerr.LimitExceeded(max(next-now, 1000))
		}
		e.RunningSince = now
		got = id
		return putEvent(tx, nil, e)
	})
	if err != nil {
		return "", err
	}
	s.rearm()
	return got, nil
}

func newID() (string, error) {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("delayed: random ID: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// errNotFound hides whether a delay ID exists for someone else.
func errNotFound() error { return matrixerr.NotFound("no delayed event with this delay_id") }

// conflict is the MSC's 409 for an action that contradicts how the event
// was finalised.
func conflict(msg string) error {
	return &matrixerr.Error{Status: http.StatusConflict, Code: "M_UNKNOWN", Message: msg}
}

// Get returns one delayed event; owner "" matches any.
func (s *Service) Get(owner, id string) (*Event, error) {
	var e *Event
	err := s.db.View(func(tx *store.Tx) error {
		var err error
		e, err = getEvent(tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	if e == nil || (owner != "" && e.UserID != owner) {
		return nil, errNotFound()
	}
	return e, nil
}

// List returns every delayed event of userID, scheduled and finalised.
func (s *Service) List(userID string) ([]*Event, error) {
	var out []*Event
	err := s.db.View(func(tx *store.Tx) error {
		var err error
		out, err = userEvents(tx, userID)
		return err
	})
	return out, err
}

// claim waits until id is not being sent by the timer, so that an
// action sees the outcome of a send that had started; it then marks id as
// in flight for the caller, who must call the returned done.
func (s *Service) claim(ctx context.Context, id string) (done func(), err error) {
	for {
		s.mu.Lock()
		ch, busy := s.inflight[id]
		if !busy {
			ch = make(chan struct{})
			s.inflight[id] = ch
			s.mu.Unlock()
			return func() {
				s.mu.Lock()
				delete(s.inflight, id)
				s.mu.Unlock()
				close(ch)
			}, nil
		}
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Cancel finalises a scheduled event without sending it; owner "" is the
// unauthenticated form, where knowing the delay ID is the capability
// (MSC4140 "Managing scheduled delayed events").
func (s *Service) Cancel(ctx context.Context, owner, id string) error {
	return s.whileClaimed(ctx, id, func() error {
		return s.update(ctx, owner, id, func(e *Event) error {
			switch e.Outcome {
			case OutcomeCancel, OutcomeError:
				return errUnchanged // already cancelled: success, as a retry would want
			case OutcomeSend:
				return conflict("the delayed event was already sent")
			}
			e.Outcome, e.Reason, e.FinalisedTS = OutcomeCancel, ReasonAction, s.nowMs()
			return nil
		})
	})
}

// Restart starts a scheduled event's timer again from now.
func (s *Service) Restart(ctx context.Context, owner, id string) error {
	return s.whileClaimed(ctx, id, func() error {
		return s.update(ctx, owner, id, func(e *Event) error {
			switch e.Outcome {
			case OutcomeCancel, OutcomeError:
				return conflict("the delayed event was cancelled")
			case OutcomeSend:
				return conflict("the delayed event was already sent")
			}
			e.RunningSince = s.nowMs()
			return nil
		})
	})
}

// SendNow sends a scheduled event at once. If sending fails the error is
// returned as a send would have returned it and the event stays
// scheduled (MSC4140: the cause may be gone by its send time).
func (s *Service) SendNow(ctx context.Context, owner, id string) error {
	return s.whileClaimed(ctx, id, func() error {
		e, err := s.Get(owner, id)
		if err != nil {
			return err
		}
		switch e.Outcome {
		case OutcomeSend:
			return nil
		case OutcomeCancel, OutcomeError:
			return conflict("the delayed event was cancelled")
		}
		eventID, err := s.deliver(ctx, e)
		if err != nil {
			return err
		}
		return s.update(context.WithoutCancel(ctx), "", id, func(e *Event) error {
			if !e.Scheduled() {
				return errUnchanged
			}
			e.Outcome, e.Reason, e.EventID, e.FinalisedTS = OutcomeSend, ReasonAction, eventID, s.nowMs()
			return nil
		})
	})
}

var errUnchanged = errors.New("unchanged")

// update applies fn to the stored event id in one transaction. fn returns
// errUnchanged to leave it as it is and succeed.
func (s *Service) update(ctx context.Context, owner, id string, fn func(*Event) error) error {
	var finalised *Event
	err := s.db.Update(ctx, func(tx *store.Tx) error {
		finalised = nil
		old, err := getEvent(tx, id)
		if err != nil {
			return err
		}
		if old == nil || (owner != "" && old.UserID != owner) {
			return errNotFound()
		}
		e := *old
		if err := fn(&e); err != nil {
			return err
		}
		if !e.Scheduled() {
			finalised = &e
		}
		return putEvent(tx, old, &e)
	})
	if errors.Is(err, errUnchanged) {
		return nil
	}
	if err == nil && finalised != nil {
		if err := s.prune(finalised.UserID); err != nil {
			slog.Warn("delayed events: pruning finalised events", "user", finalised.UserID, "err", err)
		}
	}
	return err
}

// deliver sends e through the room engine as its owner.
func (s *Service) deliver(ctx context.Context, e *Event) (string, error) {
	req := room.SendRequest{Sender: e.UserID, Device: Session, RoomID: e.RoomID, Type: e.Type,
		StateKey: e.StateKey, Content: e.Content, TxnID: TxnID(e.ID)}
	if e.Type == "m.room.redaction" && e.StateKey == nil {
		var c struct {
			Redacts string `json:"redacts"`
		}
		json.Unmarshal(e.Content, &c)
		req.Redacts = c.Redacts
	}
	return s.send.Send(ctx, req)
}

// TxnID is the transaction ID a delayed event is sent with.
func TxnID(delayID string) string { return "msc4140 " + delayID }

// rearm sets the one timer to the earliest due event, or stops it.
func (s *Service) rearm() {
	var due int64
	var ok bool
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started || s.closed {
		return
	}
	s.db.View(func(tx *store.Tx) error {
		_, due, ok = firstDue(tx, s.inflight)
		return nil
	})
	if !ok {
		s.timer.Stop()
		return
	}
	due = max(due, s.pausedUntil.UnixMilli())
	s.timer.Reset(max(time.Duration(due-s.nowMs())*time.Millisecond, 0))
}

// fire sends every event that is due, one at a time, then re-arms.
func (s *Service) fire() {
	s.mu.Lock()
	if s.firing || s.closed {
		s.again = s.firing
		s.mu.Unlock()
		return
	}
	s.firing = true
	s.firingWG.Add(1)
	s.mu.Unlock()
	defer s.firingWG.Done()
	for {
		e, done := s.takeDue()
		if e == nil {
			s.mu.Lock()
			if s.again && !s.closed {
				s.again = false
				s.mu.Unlock()
				continue
			}
			s.firing = false
			s.mu.Unlock()
			break
		}
		recorded := s.sendDue(e)
		done()
		if !recorded {
			s.mu.Lock()
			s.pausedUntil = s.cfg.Now().Add(writeRetry)
			s.firing = false
			s.mu.Unlock()
			break
		}
	}
	s.rearm()
}

// takeDue claims the first scheduled event whose time has come.
func (s *Service) takeDue() (*Event, func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.cfg.Now().Before(s.pausedUntil) {
		return nil, nil
	}
	var e *Event
	s.db.View(func(tx *store.Tx) error {
		id, due, ok := firstDue(tx, s.inflight)
		if !ok || due > s.nowMs() {
			return nil
		}
		var err error
		e, err = getEvent(tx, id)
		return err
	})
	if e == nil {
		return nil, nil
	}
	ch := make(chan struct{})
	s.inflight[e.ID] = ch
	return e, func() {
		s.mu.Lock()
		delete(s.inflight, e.ID)
		s.mu.Unlock()
		close(ch)
	}
}

// writeRetry is how long sending waits after an outcome could not be
// stored.
const writeRetry = 30 * time.Second

// sendDue sends an event whose delay ran out and finalises it: sent, or
// cancelled with the error that stopped it (never retried: MSC4140
// "Rate-limiting at the point of sending"). A send cut short by Close
// leaves it scheduled. It reports false if the outcome could not be
// stored, so the event is still scheduled.
func (s *Service) sendDue(e *Event) bool {
	eventID, err := s.deliver(s.ctx, e)
	if err != nil && s.ctx.Err() != nil {
		return true // closing: it stays scheduled for the next start
	}
	var errJSON json.RawMessage
	if err != nil {
		var me *matrixerr.Error
		if !errors.As(err, &me) {
			slog.Error("delayed event could not be sent", "delay_id", e.ID, "room", e.RoomID, "err", err)
			me = matrixerr.Unknown("internal error while sending the delayed event")
		}
		errJSON, _ = json.Marshal(map[string]string{"errcode": me.Code, "error": me.Message})
		slog.Info("delayed event not sent", "delay_id", e.ID, "room", e.RoomID, "user", e.UserID, "err", me.Code+": "+me.Message)
	}
	uerr := s.update(context.Background(), "", e.ID, func(cur *Event) error {
		if !cur.Scheduled() {
			return errUnchanged // cannot happen: actions wait for the send
		}
		cur.Reason, cur.FinalisedTS = ReasonDelay, s.nowMs()
		if err != nil {
			cur.Outcome, cur.Error = OutcomeError, errJSON
		} else {
			cur.Outcome, cur.EventID = OutcomeSend, eventID
		}
		return nil
	})
	if uerr != nil {
		slog.Error("delayed event: recording its outcome; sending pauses", "delay_id", e.ID, "err", uerr, "for", writeRetry)
		return false
	}
	return true
}

// prune forgets userID's finalised events past the retention limits.
func (s *Service) prune(userID string) error {
	return s.db.Update(context.Background(), func(tx *store.Tx) error {
		mine, err := userEvents(tx, userID)
		if err != nil {
			return err
		}
		return pruneEvents(tx, mine, s.nowMs()-s.cfg.KeepFor.Milliseconds(), s.cfg.KeepFinalised)
	})
}

// pruneEvents deletes the finalised events among evs (one user's) older
// than cutoff, and the oldest beyond keep.
func pruneEvents(tx *store.Tx, evs []*Event, cutoff int64, keep int) error {
	var fin []*Event
	for _, e := range evs {
		if !e.Scheduled() {
			fin = append(fin, e)
		}
	}
	slices.SortFunc(fin, func(a, b *Event) int { return cmp.Compare(b.FinalisedTS, a.FinalisedTS) })
	for i, e := range fin {
		if i >= keep || e.FinalisedTS < cutoff {
			if err := deleteEvent(tx, e); err != nil {
				return err
			}
		}
	}
	return nil
}

// pruneAll applies the retention limits to every user, at start; it
// writes only if something is past them.
func (s *Service) pruneAll() error {
	cutoff := s.nowMs() - s.cfg.KeepFor.Milliseconds()
	var users []string
	err := s.db.View(func(tx *store.Tx) error {
		finalised := map[string]int{}
		c := tx.Cursor(store.Delayed)
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var e Event
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("delayed: read %s: %w", k, err)
			}
			if e.Scheduled() {
				continue
			}
			finalised[e.UserID]++
			if e.FinalisedTS < cutoff || finalised[e.UserID] == s.cfg.KeepFinalised+1 {
				users = append(users, e.UserID)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, u := range users {
		if err := s.prune(u); err != nil {
			return err
		}
	}
	return nil
}

// whileClaimed runs fn holding the claim on id (one action at a time per
// event, and none while its timer sends it), then re-arms the timer: while
// the claim is held, rearm does not see this event.
func (s *Service) whileClaimed(ctx context.Context, id string, fn func() error) error {
	done, err := s.claim(ctx, id)
	if err != nil {
		return err
	}
	defer s.rearm()
	defer done()
	return fn()
}
