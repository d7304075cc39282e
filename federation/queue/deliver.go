package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/internal/store"
)

const (
	// A destination failing for longer than trimAfter keeps only its
	// newest keepPDUs PDUs: a server down for a day catches up on older
	// history by backfill (Server-Server API §"Backfilling"), and the
	// queue must not grow without bound for a server that never returns.
	// EDUs are kept (to-device messages cannot be backfilled).
	trimAfter = 24 * time.Hour
	keepPDUs  = 500
	// txnReserve is how many txn counters one stored write reserves.
	txnReserve = 64
)

// batch is one transaction's worth of a destination's queue: always a
// prefix of it, so that deleting keys after success keeps queue order.
type batch struct {
	keys [][]byte // every entry consumed, including unreadable ones dropped
	pdus []json.RawMessage
	edus []gomatrixserverlib.EDU
	txn  string // set once sent; a retry reuses it
}

func (b *batch) empty() bool { return len(b.pdus) == 0 && len(b.edus) == 0 }

// work sends d's queue until it is empty (then the worker ends) or ctx
// ends. One transaction at a time, in queue order.
func (q *Queue) work(ctx context.Context, d *dest) {
	defer q.wg.Done()
	for {
		if !q.waitBackoff(ctx, d) {
			break
		}
		q.mu.Lock()
		d.pending, d.woken = false, false
		nudge := d.nudge
		d.nudge = false
		q.mu.Unlock()
		b := d.retry
		if b == nil {
			var err error
			if b, err = q.loadBatch(d.name); err != nil {
				q.failed(d, nil, err)
				continue
			}
		}
		if b.empty() && !nudge {
			if len(b.keys) > 0 { // only unreadable entries
				if err := q.remove(b.keys); err != nil {
					q.failed(d, nil, err)
				}
				continue
			}
			q.mu.Lock()
			if d.pending {
				q.mu.Unlock()
				continue
			}
			d.active, d.retry = false, nil
			q.mu.Unlock()
			return
		}
		q.send(ctx, d, b)
		if ctx.Err() != nil {
			break
		}
	}
	q.mu.Lock()
	d.active, d.retry = false, nil
	q.mu.Unlock()
}

// waitBackoff blocks until d may be tried; false if ctx ended first.
func (q *Queue) waitBackoff(ctx context.Context, d *dest) bool {
	for {
		q.mu.Lock()
		next := d.st.NextTry
		wait := fromMS(next).Sub(q.now())
		q.mu.Unlock()
		if ctx.Err() != nil {
			return false
		}
		if next == 0 || wait <= 0 {
			return true
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-d.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// loadBatch reads the oldest entries of dest's queue, up to the first
// that would exceed a limit (≤ maxPDUs PDUs, ≤ maxEDUs EDUs).
func (q *Queue) loadBatch(name string) (*batch, error) {
	b := &batch{pdus: []json.RawMessage{}, edus: []gomatrixserverlib.EDU{}}
	err := q.db.View(func(tx *store.Tx) error {
		prefix := queuePrefix(name)
		c := tx.Cursor(store.FedQueue)
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			switch {
			case len(v) == 9 && v[0] == kindPDU:
				if len(b.pdus) == maxPDUs {
					return nil
				}
				js, err := q.events.EventJSON(tx, store.U64(v[1:]))
				if err != nil {
					slog.Warn("federation queue: dropping a PDU that cannot be loaded", "destination", name, "err", err)
					break
				}
				b.pdus = append(b.pdus, bytes.Clone(js))
			case len(v) > 1 && v[0] == kindEDU:
				if len(b.edus) == maxEDUs {
					return nil
				}
				var r eduRecord
				if err := json.Unmarshal(v[1:], &r); err != nil {
					slog.Warn("federation queue: dropping an unreadable EDU", "destination", name, "err", err)
					break
				}
				b.edus = append(b.edus, gomatrixserverlib.EDU{Type: r.Type, Origin: string(q.origin),
					Destination: name, Content: spec.RawJSON(r.Content)})
			default:
				slog.Warn("federation queue: dropping an unreadable entry", "destination", name)
			}
			b.keys = append(b.keys, bytes.Clone(k))
		}
		return nil
	})
	return b, err
}

// send sends b as one transaction and records the outcome.
func (q *Queue) send(ctx context.Context, d *dest, b *batch) {
	if b.txn == "" {
		id, err := q.nextTxn(d)
		if err != nil {
			q.failed(d, nil, err)
			return
		}
		b.txn = id
	}
	t := gomatrixserverlib.Transaction{TransactionID: gomatrixserverlib.TransactionID(b.txn),
		Origin: q.origin, Destination: spec.ServerName(d.name), OriginServerTS: spec.AsTimestamp(q.now()),
		PDUs: b.pdus, EDUs: b.edus}
	sctx, cancel := context.WithTimeout(ctx, q.sendTimeout)
	resp, err := q.sender.SendTransaction(sctx, t)
	cancel()
	switch {
	case err == nil: // even while stopping: acknowledged is done

		for id, r := range resp.PDUs {
			if r.Error != "" {
				slog.Debug("federation queue: remote refused a PDU", "destination", d.name, "event_id", id, "err", r.Error)
			}
		}
		q.done(d, b, "")
	case ctx.Err() != nil:
		// Stopping: the batch stays queued for the next start.
	case permanent(err):
		// The remote is up but will never take this transaction; resending
		// it would block everything behind it.
		slog.Warn("federation queue: dropping a rejected transaction", "destination", d.name, "txn", b.txn,
			"pdus", len(b.pdus), "edus", len(b.edus), "err", describe(err))
		q.done(d, b, describe(err))
	default:
		q.failed(d, b, err)
	}
}

// done removes a sent (or dropped) batch and clears the backoff. The
// last error stays for Status: Failures says whether it is current.
func (q *Queue) done(d *dest, b *batch, lastErr string) {
	q.mu.Lock()
	d.st.Failures, d.st.NextTry, d.st.FailingSince = 0, 0, 0
	if lastErr == "" {
		d.st.LastSent = ms(q.now())
	} else {
		d.st.LastError = lastErr
	}
	st := d.st
	q.mu.Unlock()
	d.retry = nil
	// Not the worker's context: an acknowledged batch must be deleted
	// even while stopping, or it would be sent again.
	err := q.db.Update(context.Background(), func(tx *store.Tx) error {
		for _, k := range b.keys {
			if err := tx.Delete(store.FedQueue, k); err != nil {
				return err
			}
		}
		return putState(tx, d.name, st)
	})
	if err != nil {
		slog.Error("federation queue: removing a sent transaction", "destination", d.name, "err", err)
	}
}

// remove deletes entries that could not be read (already logged).
func (q *Queue) remove(keys [][]byte) error {
	return q.db.Update(context.Background(), func(tx *store.Tx) error {
		for _, k := range keys {
			if err := tx.Delete(store.FedQueue, k); err != nil {
				return err
			}
		}
		return nil
	})
}

// failed records a failed attempt, schedules the next with backoff and,
// for a destination failing longer than trimAfter, trims its PDUs. b (if
// any) is kept to be resent with the same txn ID, so a remote that did
// process it answers from its idempotency cache.
func (q *Queue) failed(d *dest, b *batch, err error) {
	q.mu.Lock()
	now := q.now()
	d.st.Failures++
	if d.st.FailingSince == 0 {
		d.st.FailingSince = ms(now)
	}
	d.st.LastError = describe(err)
	d.st.NextTry = ms(now.Add(q.backoff(d.st.Failures)))
	if d.woken { // woken during the attempt: try again now (Wake)
		d.st.NextTry, d.woken = 0, false
	}
	st := d.st
	trim := now.Sub(fromMS(st.FailingSince)) > trimAfter
	q.mu.Unlock()
	slog.Info("federation queue: send failed", "destination", d.name, "failures", st.Failures, "err", st.LastError)
	d.retry = nil
	if b != nil && len(b.keys) > 0 {
		d.retry = b
	}
	trimmed := 0
	uerr := q.db.Update(context.Background(), func(tx *store.Tx) error {
		trimmed = 0
		if trim {
			var err error
			if trimmed, err = trimPDUs(tx, d.name); err != nil {
				return err
			}
		}
		return putState(tx, d.name, st)
	})
	if uerr != nil {
		slog.Error("federation queue: recording a failure", "destination", d.name, "err", uerr)
	}
	if trimmed > 0 {
		d.retry = nil
		slog.Warn("federation queue: trimmed the oldest PDUs of a destination down for a day",
			"destination", d.name, "dropped", trimmed, "kept", keepPDUs)
	}
}

// trimPDUs deletes all but the newest keepPDUs PDUs queued for dest.
func trimPDUs(tx *store.Tx, dest string) (int, error) {
	var pdus [][]byte
	prefix := queuePrefix(dest)
	c := tx.Cursor(store.FedQueue)
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if len(v) > 0 && v[0] == kindPDU {
			pdus = append(pdus, bytes.Clone(k))
		}
	}
	n := len(pdus) - keepPDUs
	for i := 0; i < n; i++ {
		if err := tx.Delete(store.FedQueue, pdus[i]); err != nil {
			return 0, err
		}
	}
	return max(n, 0), nil
}

// nextTxn returns a fresh txn ID for d, first storing a new reservation
// of counters when the last one is used up.
func (q *Queue) nextTxn(d *dest) (string, error) {
	q.mu.Lock()
	n, epoch := d.txnNext, q.epoch
	reserve := n >= d.st.TxnReserved
	if reserve {
		d.st.TxnReserved = n + txnReserve
	}
	d.txnNext = n + 1
	st := d.st
	q.mu.Unlock()
	if epoch == "" { // Start could not load it; the consumer has written it since
		q.db.View(func(tx *store.Tx) error { epoch = string(tx.Get(store.FedMeta, keyEpoch)); return nil })
		if epoch == "" {
			return "", errors.New("queue: no txn ID epoch stored yet")
		}
		q.mu.Lock()
		q.epoch = epoch
		q.mu.Unlock()
	}
	if reserve {
		err := q.db.Update(context.Background(), func(tx *store.Tx) error { return putState(tx, d.name, st) })
		if err != nil {
			q.mu.Lock()
			d.st.TxnReserved = n // force a new reservation next time
			q.mu.Unlock()
			return "", fmt.Errorf("queue: reserve txn IDs: %w", err)
		}
	}
	return txnID(epoch, n), nil
}

var _ Sender = fclient.FederationClient(nil)
