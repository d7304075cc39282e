package queue

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/hearth-chat/hearth/internal/store"
)

// FedMeta keys. Destination state lives under "d" 0x00 destination so no
// server name can collide with the fixed keys.
var (
	keyPos   = []byte("pos")   // u64 stream position the consumer has queued up to
	keyEpoch = []byte("epoch") // random hex, made once per data file: the txn ID prefix
)

func destKey(dest string) []byte { return store.Key("d", dest) }

// Record kinds, the first byte of a fedqueue value.
const (
	kindPDU byte = 1 // followed by the event NID (u64)
	kindEDU byte = 2 // followed by the EDU as eduRecord JSON
)

// eduRecord is a queued EDU; origin and destination are set when sent.
type eduRecord struct {
	Type    string          `json:"t"`
	Content json.RawMessage `json:"c"`
}

// queueKey is destination 0x00 ‖ seq: byte order is queue order per
// destination, and seq comes from the bucket's own sequence, so PDUs and
// EDUs interleave in the order they were queued.
func queueKey(dest string, seq uint64) []byte {
	return append(append([]byte(dest), 0), store.PutU64(seq)...)
}

func queuePrefix(dest string) []byte { return append([]byte(dest), 0) }

// destOfKey returns the destination part of a fedqueue key.
func destOfKey(k []byte) string {
	if i := bytes.IndexByte(k, 0); i >= 0 {
		return string(k[:i])
	}
	return ""
}

func pduValue(nid uint64) []byte { return append([]byte{kindPDU}, store.PutU64(nid)...) }

// putEntry queues one value for dest at the next sequence number.
func putEntry(tx *store.Tx, dest string, v []byte) error {
	seq, err := tx.NextID(store.FedQueue)
	if err != nil {
		return err
	}
	return tx.Put(store.FedQueue, queueKey(dest, seq), v)
}

// destState is what survives a restart about one destination (FedMeta
// "d" 0x00 destination, JSON). Times are Unix milliseconds, 0 for never.
type destState struct {
	// TxnReserved bounds the txn counters handed out: counters below it
	// may have been used, so after a restart numbering resumes there.
	TxnReserved  uint64 `json:"txn"`
	Failures     int    `json:"failures,omitempty"`
	LastError    string `json:"last_error,omitempty"`
	NextTry      int64  `json:"next_try,omitempty"`
	LastSent     int64  `json:"last_sent,omitempty"`
	FailingSince int64  `json:"failing_since,omitempty"`
}

func putState(tx *store.Tx, dest string, st destState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("queue: encode state of %s: %w", dest, err)
	}
	return tx.Put(store.FedMeta, destKey(dest), b)
}

// loadStates reads every destination's stored state.
func loadStates(tx *store.Tx) (map[string]destState, error) {
	out := map[string]destState{}
	prefix := destKey("")
	c := tx.Cursor(store.FedMeta)
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var st destState
		if err := json.Unmarshal(v, &st); err != nil {
			return nil, fmt.Errorf("queue: decode state of %s: %w", k[len(prefix):], err)
		}
		out[string(k[len(prefix):])] = st
	}
	return out, nil
}

// ensureMeta starts the consumer at the current stream position when the
// queue has never run (sending the whole history to servers that joined
// later would be wrong: they backfill), and makes the txn ID epoch.
func ensureMeta(tx *store.Tx) error {
	if tx.Get(store.FedMeta, keyPos) == nil {
		if err := tx.Put(store.FedMeta, keyPos, store.PutU64(tx.Pos())); err != nil {
			return err
		}
	}
	if tx.Get(store.FedMeta, keyEpoch) == nil {
		b := make([]byte, 8)
		rand.Read(b)
		if err := tx.Put(store.FedMeta, keyEpoch, []byte(hex.EncodeToString(b))); err != nil {
			return err
		}
	}
	return nil
}

// txnID is epoch-counter. The counter is persisted per destination before
// use, so IDs never repeat while the data file lives; the random epoch
// keeps a fresh data file under the same server name from reusing IDs a
// remote may still remember (it would answer from its idempotency cache
// and drop the new transaction). The result matches the spec's
// ^[0-9A-Za-z\-_]*$.
func txnID(epoch string, n uint64) string { return epoch + "-" + strconv.FormatUint(n, 10) }

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v)
}
