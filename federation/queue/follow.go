package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
)

// followBatch bounds the events queued in one write transaction, so that
// catching up after a restart never holds the store's writer for long.
const followBatch = 1000

var errBatchFull = errors.New("batch full")

// follow queues new outbound events until ctx ends: it waits on the
// notifier (no polling) and, for each commit, queues the events after its
// position and moves the position in the same write, so a crash neither
// loses nor duplicates an entry.
//
// An error (a store failure, an event it cannot read) is logged and the
// step retried after followRetry: the consumer must not die silently, and
// the failed write changed nothing.
func (q *Queue) follow(ctx context.Context) error {
	for {
		pos, eph := q.waiter.Pos()
		done, err := q.step(ctx, pos)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			slog.Error("federation queue: queueing events", "err", err)
			t := time.NewTimer(followRetry)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			continue
		}
		if done {
			if err := q.waiter.Wait(ctx, pos, eph); err != nil {
				return err
			}
		}
	}
}

const followRetry = 5 * time.Second

// step queues what lies between the stored position and pos; done means
// there was nothing left (time to wait for the next commit).
func (q *Queue) step(ctx context.Context, pos uint64) (done bool, err error) {
	var have []byte
	if err := q.db.View(func(tx *store.Tx) error {
		have = bytes.Clone(tx.Get(store.FedMeta, keyPos))
		return nil
	}); err != nil {
		return false, err
	}
	if have == nil { // Start could not write it: never start from 0
		return false, q.db.Update(ctx, ensureMeta)
	}
	if max(store.U64(have), q.scanned) >= pos {
		return true, nil
	}
	if nothing, err := q.nothingToQueue(store.U64(have), pos); err != nil || nothing {
		if nothing {
			q.scanned = pos
		}
		return false, err
	}
	dests, joins, err := q.queueEvents(ctx, pos)
	if err != nil {
		return false, err
	}
	for _, d := range dests {
		q.kick(d)
	}
	q.mu.Lock()
	onJoin := q.onJoin
	q.mu.Unlock()
	for _, j := range joins {
		if onJoin != nil { // set once at start-up (OnLocalJoin)
			onJoin(ctx, j.Joined, j.Destinations)
		}
	}
	return false, nil
}

// nothingToQueue reports whether no event after from and up to upTo goes
// to another server, looking without writing.
func (q *Queue) nothingToQueue(from, upTo uint64) (bool, error) {
	found := false
	err := q.db.View(func(tx *store.Tx) error {
		err := q.events.OutboundEvents(tx, max(from, q.scanned), upTo, func(o room.Outbound) error {
			found = len(q.remote(o.Destinations)) > 0
			if found {
				return errBatchFull
			}
			return nil
		})
		if errors.Is(err, errBatchFull) {
			return nil
		}
		return err
	})
	return !found, err
}

// queueEvents queues up to followBatch outbound events after the stored
// position and not past upTo, and returns the destinations that got any.
// The write may run more than once, so it starts from the transaction's
// own position and rebuilds its result on every run.
func (q *Queue) queueEvents(ctx context.Context, upTo uint64) ([]string, []room.Outbound, error) {
	var dests []string
	var joins []room.Outbound
	err := q.db.Update(ctx, func(tx *store.Tx) error {
		dests, joins = dests[:0], joins[:0]
		seen := map[string]bool{}
		from := store.U64(tx.Get(store.FedMeta, keyPos))
		last, n := upTo, 0
		err := q.events.OutboundEvents(tx, from, upTo, func(o room.Outbound) error {
			if n == followBatch {
				last = o.NID - 1 // event NIDs are stream positions
				return errBatchFull
			}
			n++
			remote := q.remote(o.Destinations)
			if o.Joined != "" && len(remote) > 0 {
				joins = append(joins, room.Outbound{Joined: o.Joined, RoomID: o.RoomID, Destinations: remote})
			}
			if o.Delivered {
				return nil // the servers have it already (room.Outbound)
			}
			v := pduValue(o.NID)
			for _, d := range remote {
				if err := putEntry(tx, d, v); err != nil {
					return err
				}
				if !seen[d] {
					seen[d] = true
					dests = append(dests, d)
				}
			}
			return nil
		})
		if err != nil && !errors.Is(err, errBatchFull) {
			return fmt.Errorf("queue: outbound events after %d: %w", from, err)
		}
		return tx.Put(store.FedMeta, keyPos, store.PutU64(max(last, from)))
	})
	return dests, joins, err
}

// OnLocalJoin sets what to do, after it is queued, about a local user's
// join of a room with other servers: announce the user's devices to them
// (federation does, with m.device_list_update EDUs). It runs on the
// follower's goroutine; a crash between the queueing and the call loses
// the announcement, which, like every EDU, is best effort.
func (q *Queue) OnLocalJoin(fn func(ctx context.Context, userID string, destinations []string)) {
	q.mu.Lock()
	q.onJoin = fn
	q.mu.Unlock()
}
