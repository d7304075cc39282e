// Package search owns the full-text index behind POST /search
// (Client-Server API §"Server Side Search"): an inverted index in the
// bbolt file, kept by a consumer that follows the stream of room events,
// and the query side that ranks, filters and pages hits. It reads events
// and judges history visibility only through the room engine; it never
// writes room data.
package search

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
)

// Fields a term can come from; a request's keys select among them.
const (
	FieldBody  byte = 1 << iota // content.body of m.room.message
	FieldName                   // content.name of m.room.name
	FieldTopic                  // content.topic of m.room.topic
	AllFields  = FieldBody | FieldName | FieldTopic
)

var keyPos = []byte("pos")

// Waiter is the stream notifier as the consumer uses it (stream.Notifier
// and room.Engine both provide it).
type Waiter interface {
	Pos() (pos, ephemeral uint64)
	Wait(ctx context.Context, pos, ephemeral uint64) error
}

// Index is the search index of one store and its consumer.
type Index struct {
	db     *store.DB
	rooms  roomEngine
	waiter Waiter

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
	// caughtUp is closed and replaced each time the consumer finishes a
	// batch, so tests and callers can wait for a position without polling.
	caughtUp chan struct{}
	flush    chan struct{} // a waiter wants the backlog indexed now
	forced   atomic.Bool
}

// New returns the index over db; Start begins consuming.
func New(db *store.DB, rooms roomEngine, waiter Waiter) *Index {
	return &Index{db: db, rooms: rooms, waiter: waiter, caughtUp: make(chan struct{}), flush: make(chan struct{}, 1)}
}

// batchSize bounds the events indexed in one write transaction, so that
// catching up after a restart never holds the store's writer for long.
const batchSize = 1000

// Start runs the consumer until Stop: it catches up from the position
// kept in searchmeta, then waits on the notifier for each new commit.
func (ix *Index) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	ix.mu.Lock()
	ix.cancel, ix.done = cancel, make(chan struct{})
	ix.mu.Unlock()
	go func() {
		defer close(ix.done)
		if err := ix.run(ctx); err != nil && ctx.Err() == nil {
			slog.Error("search index stopped", "err", err)
		}
	}()
}

// Stop ends the consumer and waits for it; an interrupted batch was never
// committed and is redone on the next start.
func (ix *Index) Stop() {
	ix.mu.Lock()
	cancel, done := ix.cancel, ix.done
	ix.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// Indexing waits up to flushDelay for a backlog of flushBacklog positions
// before it writes: postings of a batch share bbolt pages, so a few large
// commits cost the store's writer much less than one small commit per
// message (measured: the fill rate of -quick volume fell 20% with
// per-commit indexing). A search or WaitFor flushes at once, so nobody
// sees the delay except as fewer, larger index commits.
const (
	flushDelay   = 250 * time.Millisecond
	flushBacklog = 512
)

func (ix *Index) run(ctx context.Context) error {
	var since time.Time // when the current backlog was first seen
	for {
		pos, eph := ix.waiter.Pos()
		done, err := ix.Indexed()
		if err != nil {
			return err
		}
		if done >= pos {
			since = time.Time{}
			ix.signal()
			if err := ix.waiter.Wait(ctx, pos, eph); err != nil {
				return err
			}
			continue
		}
		if since.IsZero() {
			since = time.Now()
		}
		wait := flushDelay - time.Since(since)
		if ix.forced.Swap(false) || pos-done >= flushBacklog || wait <= 0 {
			if err := ix.indexBatch(ctx, pos); err != nil {
				return err
			}
			since = time.Time{}
			ix.signal()
			continue
		}
		// Wait for more commits, a flush request or the deadline.
		wctx, cancel := context.WithTimeout(ctx, wait)
		go func() {
			select {
			case <-ix.flush:
				ix.forced.Store(true)
				cancel()
			case <-wctx.Done():
			}
		}()
		ix.waiter.Wait(wctx, pos, eph) // a flush request or the deadline ends it too
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

func (ix *Index) signal() {
	ix.mu.Lock()
	close(ix.caughtUp)
	ix.caughtUp = make(chan struct{})
	ix.mu.Unlock()
}

// WaitFor blocks until the index has consumed position pos or ctx ends;
// it asks the consumer to index its backlog now.
func (ix *Index) WaitFor(ctx context.Context, pos uint64) error {
	ix.forced.Store(true)
	select {
	case ix.flush <- struct{}{}:
	default:
	}
	for {
		ix.mu.Lock()
		ch := ix.caughtUp
		ix.mu.Unlock()
		done, err := ix.Indexed()
		if err != nil || done >= pos {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Indexed is the stream position the index has consumed.
func (ix *Index) Indexed() (uint64, error) {
	var p uint64
	err := ix.db.View(func(tx *store.Tx) error { p = store.U64(tx.Get(store.SearchMeta, keyPos)); return nil })
	return p, err
}

// indexBatch indexes up to batchSize events after the consumed position
// and moves it. The events are read and decoded in a read transaction
// first: only the postings' writes take the store's single writer, which
// every commit shares (an inbound federation transaction waiting behind
// a batch of 512 events' reading waited for all of it). Events up to
// upTo are committed already and only this goroutine moves the position,
// so what the read found still holds when the write runs; an event
// redacted since is unindexed when its redaction's turn comes, as
// before.
func (ix *Index) indexBatch(ctx context.Context, upTo uint64) error {
	var from, last uint64
	var evs []*entries
	err := ix.db.View(func(tx *store.Tx) error {
		from = store.U64(tx.Get(store.SearchMeta, keyPos))
		last, evs = upTo, nil
		err := room.IndexableEvents(tx, from, upTo, func(ev room.Searchable) error {
			if len(evs) == batchSize {
				last = ev.NID - 1
				return errBatchFull
			}
			evs = append(evs, entriesOf(ev))
			return nil
		})
		if err != nil && err != errBatchFull {
			return fmt.Errorf("search: index after %d: %w", from, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// The write may run more than once (another write of its commit
	// failed): it does the same each time.
	return ix.db.Update(ctx, func(tx *store.Tx) error {
		if store.U64(tx.Get(store.SearchMeta, keyPos)) != from {
			return nil // moved meanwhile (not by this goroutine: never); read again
		}
		for _, en := range evs {
			if err := en.put(tx); err != nil {
				return err
			}
		}
		return tx.Put(store.SearchMeta, keyPos, store.PutU64(last))
	})
}

var errBatchFull = fmt.Errorf("batch full")

// entries is what indexing one event writes: the postings of its terms
// and its document record, or the removal of a redacted event's. They
// are made outside the store's writer (indexBatch) and written in it.
type entries struct {
	unindex uint64 // the event a redaction removes from the index
	nid     []byte
	terms   [][2][]byte // term key, posting
	doc     []byte      // nil: nothing to index
}

func entriesOf(ev room.Searchable) *entries {
	if ev.Redacts != 0 {
		return &entries{unindex: ev.Redacts}
	}
	if ev.Skip {
		return &entries{}
	}
	field, text := FieldBody, ev.Body
	switch {
	case ev.Name != "":
		field, text = FieldName, ev.Name
	case ev.Topic != "":
		field, text = FieldTopic, ev.Topic
	}
	terms := tokenize(text)
	if len(terms) == 0 {
		return &entries{}
	}
	tf := map[string]int{}
	var distinct []string
	for _, t := range terms {
		if tf[t] == 0 {
			distinct = append(distinct, t)
		}
		tf[t]++
	}
	en := &entries{nid: store.PutU64(ev.NID)}
	for _, t := range distinct {
		v := binary.AppendUvarint(nil, ev.RoomNID)
		v = append(v, field)
		v = binary.AppendUvarint(v, uint64(tf[t]))
		v = binary.AppendUvarint(v, uint64(len(terms)))
		en.terms = append(en.terms, [2][]byte{termKey(t, en.nid), v})
	}
	d := binary.AppendUvarint(nil, ev.RoomNID)
	d = append(d, field)
	d = appendString(d, ev.Sender)
	d = appendString(d, ev.Type)
	for _, t := range distinct {
		d = appendString(d, t)
	}
	en.doc = d
	return en
}

func (en *entries) put(tx *store.Tx) error {
	if en.unindex != 0 {
		return unindex(tx, en.unindex)
	}
	if en.doc == nil {
		return nil
	}
	for _, kv := range en.terms {
		if err := tx.Put(store.SearchTerms, kv[0], kv[1]); err != nil {
			return err
		}
	}
	return tx.Put(store.SearchDocs, en.nid, en.doc)
}

// unindex removes a redacted event's postings, found through its doc.
func unindex(tx *store.Tx, nid uint64) error {
	key := store.PutU64(nid)
	d, err := decodeDoc(tx.Get(store.SearchDocs, key))
	if err != nil || d == nil {
		return err
	}
	for _, t := range d.terms {
		if err := tx.Delete(store.SearchTerms, termKey(t, key)); err != nil {
			return err
		}
	}
	return tx.Delete(store.SearchDocs, key)
}

func termKey(term string, nid []byte) []byte {
	k := make([]byte, 0, len(term)+9)
	k = append(append(k, term...), 0)
	return append(k, nid...)
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// doc is a decoded searchdocs record.
type doc struct {
	roomNID     uint64
	field       byte
	sender, typ string
	terms       []string
}

func decodeDoc(b []byte) (*doc, error) {
	if b == nil {
		return nil, nil
	}
	d := &doc{}
	var n int
	d.roomNID, n = binary.Uvarint(b)
	if n <= 0 || len(b) <= n {
		return nil, fmt.Errorf("search: bad doc record")
	}
	d.field, b = b[n], b[n+1:]
	var strs []string
	for len(b) > 0 {
		l, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < l {
			return nil, fmt.Errorf("search: bad doc record")
		}
		strs = append(strs, string(b[n:n+int(l)]))
		b = b[n+int(l):]
	}
	if len(strs) < 2 {
		return nil, fmt.Errorf("search: bad doc record")
	}
	d.sender, d.typ, d.terms = strs[0], strs[1], strs[2:]
	return d, nil
}
