package push

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
)

// The notification log gains a record per recipient of every notifying
// event and nothing took them out: in a busy room it grew by a record a
// message for as long as the daemon ran. Pruning deletes the records
// nothing needs any more: those the user has read (the unread counts
// skip them) once they are older than pruneAfter. A month of
// notifications stays listed by GET /notifications, read or not, as
// Synapse keeps a month of highlights (it deletes read non-highlights at
// the receipt). A read receipt never moves back (room.Engine.SetReceipt
// ignores an older one), so a record once read stays read; the month is
// for the listing. Unread records stay whatever their age: the counts
// are made from them.
//
// It runs after a store of the log, at most once per pruneEvery: a
// daemon that stores nothing (an idle one) never wakes for it.
var pruneAfter = 30 * 24 * time.Hour

const pruneEvery = time.Hour

// pruneBatch bounds the records one write transaction scans, so the
// store's writer is never held long (a send waits behind it); a variable
// for tests.
var pruneBatch = 4096

// maybePrune prunes the log if pruneEvery has passed since the last
// time; a failure is logged and tried again at the next period.
func (s *Service) maybePrune(ctx context.Context) {
	now := s.now()
	if last := s.prunedAt.Load(); last != 0 && now.Sub(time.Unix(0, last)) < pruneEvery {
		return
	}
	s.prunedAt.Store(now.UnixNano())
	if n, err := s.pruneLog(ctx); err != nil {
		s.log.Warn("push: prune the notification log", "err", err)
	} else if n > 0 {
		s.log.Debug("push: pruned the notification log", "records", n)
	}
}

// pruneLog deletes every record of the log that its user has read and
// that was stored before now - pruneAfter, and returns how many.
func (s *Service) pruneLog(ctx context.Context) (int, error) {
	cutoff := s.now().Add(-pruneAfter).UnixMilli()
	var from []byte // where the next transaction goes on; nil: the start
	deleted := 0
	for {
		var next []byte
		var n int
		err := s.db.Update(ctx, func(tx *store.Tx) error {
			var err error
			next, n, err = pruneFrom(tx, from, cutoff)
			return err
		})
		if err != nil {
			return deleted, fmt.Errorf("push: prune: %w", err)
		}
		deleted += n
		if next == nil {
			return deleted, nil
		}
		from = next
	}
}

// pruneFrom prunes the log from key from on, one (user, room) range
// after the other, scanning at most pruneBatch records; it returns the
// key to go on from, nil at the end. Records of a range are in stream
// order, which is the order they were stored in: the scan of a range
// stops at its first record newer than cutoff, or past every receipt
// (unread in any thread: a room never read costs a seek). A record is
// read when the user's receipts in the room, as this transaction sees
// them, cover its position (the counts' rule, countsTx).
func pruneFrom(tx *store.Tx, from []byte, cutoff int64) (next []byte, deleted int, err error) {
	var doomed [][]byte
	c := tx.Cursor(store.PushLog)
	k, v := c.First()
	if from != nil {
		k, v = c.Seek(from)
	}
scan:
	for scanned := 0; k != nil; {
		user, roomID, ok := splitLogKey(k)
		if !ok {
			return nil, 0, fmt.Errorf("malformed key %q", k)
		}
		prefix := store.Key(user, roomID, "")
		upTo := room.ReadUpToIn(tx, user, roomID)
		newest := uint64(0)
		for _, pos := range upTo {
			newest = max(newest, pos)
		}
		for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if scanned == pruneBatch {
				next = bytes.Clone(k)
				break scan
			}
			scanned++
			pos := store.U64(k[len(prefix):])
			if pos > newest {
				break
			}
			r, err := decodeRecord(v, false)
			if err != nil {
				return nil, 0, fmt.Errorf("decode %q: %w", k, err)
			}
			if r.TS >= cutoff {
				break
			}
			if pos <= upTo[""] || pos <= upTo[r.Thread] {
				doomed = append(doomed, bytes.Clone(k))
			}
		}
		k, v = c.Seek(store.Key(user, roomID+"\x01")) // the next range
	}
	// Deleted after the scan: a bbolt cursor that deletes skips the
	// record after the one it deleted.
	for _, k := range doomed {
		if err := tx.Delete(store.PushLog, k); err != nil {
			return nil, 0, err
		}
	}
	return next, len(doomed), nil
}

// splitLogKey splits a log key (logKey) into its user and room.
func splitLogKey(k []byte) (user, roomID string, ok bool) {
	i := bytes.IndexByte(k, 0)
	if i < 0 || len(k) < i+1+9 || k[len(k)-9] != 0 {
		return "", "", false
	}
	return string(k[:i]), string(k[i+1 : len(k)-9]), true
}
