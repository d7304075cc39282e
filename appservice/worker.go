package appservice

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/hearth-chat/hearth/internal/store"
)

// The workers: one per appservice, sending its queue as transactions.

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
	msc3202Fields                     // device lists and key counts (e2ee.go)
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
	var h *handoff // events the follower is writing now (handoff.go)
	err = q.db.View(func(tx *store.Tx) error {
		var err error
		if st, err = loadState(tx, id); err != nil {
			return err
		}
		// A retry of MSC3202 data alone goes first, under its own
		// transaction ID and exactly as before; a hand-off waiting
		// meanwhile is taken by the next call.
		if q.e2eeRetry(s, st, *inFlight) {
			return nil
		}
		// Taken inside the read: a hand-off made later is of entries
		// this read cannot see, so none is sent both ways.
		if h = q.takeHandoff(id); h != nil {
			txn.Events = h.events
			return nil
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
	if h != nil {
		defer q.endHandoff(id, h)
	}
	if err != nil {
		*inFlight = 0
		return false, 0, err
	}
	part, err := q.e2eeFor(s, st)
	if err != nil {
		return true, q.minBackoff, err
	}
	if upTo == 0 && h == nil && part == nil {
		*inFlight = 0
		return false, 0, nil
	}
	*inFlight = upTo
	if d := time.Until(time.UnixMilli(st.NextTry)); st.NextTry != 0 && d > 0 {
		return true, d, nil
	}
	if txn.Events == nil {
		txn.Events = []json.RawMessage{}
	}
	txn.MSC2409Ephemeral, txn.MSC2409ToDevice = txn.Ephemeral, txn.ToDevice
	txn.msc3202Fields = part.fields()
	q.sending(s, part)
	txnID := strconv.FormatInt(s.AddedTS, 10) + "." + strconv.FormatUint(st.NextTxn, 10)
	sendCtx, cancel := context.WithTimeout(ctx, q.sendTimeout)
	sendErr := s.call(sendCtx, http.MethodPut, "/_matrix/app/v1/transactions/"+txnID, txn, nil)
	cancel()
	if ctx.Err() != nil {
		return false, 0, ctx.Err()
	}
	if h != nil {
		<-h.written
		if upTo = h.upTo; upTo == 0 {
			// Not written: the follower looks at them again, maybe with
			// more, and they go under a new ID — this one may have been
			// taken, and an appservice drops a repeated ID unread.
			if err := q.burnTxn(ctx, s, st.NextTxn); err != nil {
				return true, q.minBackoff, err
			}
			return true, 0, sendErr
		}
		*inFlight = upTo
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
			st.PendingE2EE = part
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
		st.delivered(part)
		st.PendingUpTo, st.Failures, st.NextTry = 0, 0, 0
		st.LastError = ""
		st.LastSuccess = time.Now().UnixMilli()
		return saveState(tx, id, st)
	})
	if err != nil {
		return false, q.minBackoff, err
	}
	q.settled(s)
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

// burnTxn moves s's transaction counter past used, which a hand-off was
// sent under but the follower failed to queue, so that it is never sent
// again with other contents (Application Service API §"Pushing events":
// the appservice takes a repeated ID for a retry). Stored, so a restart
// keeps it too.
func (q *Queue) burnTxn(ctx context.Context, s *Service, used uint64) error {
	id := s.ID()
	return q.db.Update(context.WithoutCancel(ctx), func(tx *store.Tx) error {
		if q.reg.Get(id) != s {
			return nil // removed (or replaced): its state went with it
		}
		st, err := loadState(tx, id)
		if err != nil {
			return err
		}
		if st.NextTxn != used {
			return nil
		}
		st.NextTxn++
		return saveState(tx, id, st)
	})
}
