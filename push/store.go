package push

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
)

// One batch of events: evaluated, then its notifications stored, its
// deliveries queued and the stored position moved in one commit.

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
