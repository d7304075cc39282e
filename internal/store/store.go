// Package store owns Hearth's single bbolt file: the bucket layout, key
// encodings, transactions and group commit. It knows nothing of Matrix; the
// packages above it (room, account) decide what the values mean.
//
// # Layout
//
// Top-level buckets (their names are the variables in migrate.go, beside the
// migrations that create them):
//
//	meta          "pos" → u64 last stream position; "schema" → u64 schema version;
//	              "server_name" → the Matrix server name the data was written under (recorded
//	              by the daemon at the first start that finds none; files from before have none
//	              until then, so no schema step is needed); "eventids_to" → u64: every event
//	              at or below it has its ID in eventids (schema 5)
//	users         localpart → account.User (JSON)
//	devices       localpart 0x00 deviceID → account.Device (JSON)
//	tokens        sha256(access or refresh token) → account.Token (JSON)
//	accountdata   localpart 0x00 roomID 0x00 type → content (JSON); roomID empty for global data
//	filters       localpart 0x00 filterID → filter JSON
//	rooms         roomID → roomNID (u64)
//	roominfo      roomNID → room.Info (binary record: NID, room ID, version, depth, snapshot, last position,
//	              joined and invited counts, forward extremities; internal/room/engine.go putRoomInfo)
//	events        eventNID (u64) → room.storedEvent (binary header + event JSON)
//	eventids      eventID → eventNID, for events at or below meta "eventids_to" (the later ones
//	              are indexed in memory: internal/room/store_eventids.go)
//	txns          userID 0x00 session 0x00 txnID 0x00 roomID 0x00 (eventType | "redact " redactedID) → eventNID
//	              (keys written before client sessions were localpart 0x00 deviceID 0x00 txnID; they are
//	              never read again, which only forgets retries in flight across the upgrade);
//	              written in batches from txnlog, not with each event (internal/room/store_txns.go)
//	txnlog        eventNID → the txns key of a client transaction sent since the last merge into txns
//	              (append-only, so one commit's sends share a page; files from before have it empty)
//	timeline      roomNID ‖ streamPos → eventNID   (stream order of a room)
//	state         roomNID ‖ type 0x00 stateKey → eventNID   (current state)
//	snapshots     snapshotNID → room.snapshot (parent + delta)
//	members       localpart 0x00 roomNID → membership ‖ streamPos of that change
//	changes       streamPos → change record (account data, receipts, profile changes, …)
//	receipts      roomNID ‖ userID 0x00 type 0x00 threadID → receipt (JSON) (ReceiptKey)
//	aliases       #alias:server → roomID
//	directory     roomNID → nil (rooms published in the local directory)
//	relations     roomNID ‖ parentEventNID ‖ eventNID → rel_type
//	memberlog     roomNID ‖ userID 0x00 ‖ streamPos → membership (every change, for history visibility)
//	historylog    roomNID ‖ streamPos → history_visibility (every change)
//	media         mediaID → media.Record (JSON: sha256, content type, filename, size, uploader, created; no hash while an async upload is pending);
//	              serverName "/" mediaID → media.Record with origin set: the cached copy of another server's media (no uploader, no quota)
//	mediapending  userID 0x00 mediaID → u64 unused_expires_at (ms) of a created, not yet uploaded mxc URI
//	mediausage    userID → u64 bytes of media the user uploaded (for media_quota_bytes)
//	devicekeys    userID 0x00 deviceID → device keys JSON as uploaded (internal/e2ee)
//	otks          userID 0x00 deviceID 0x00 algorithm 0x00 uploadSeq(8) keyID → one-time key JSON
//	              (uploadSeq from the bucket's sequence, so a claim takes the first: the oldest; schema 1
//	              keyed by key ID, see migrate.go)
//	fallbackkeys  userID 0x00 deviceID 0x00 algorithm → keys.fallback (JSON: key ID, key, used)
//	crosssigning  userID 0x00 master|self_signing|user_signing → cross-signing key JSON
//	keysigs       targetUserID 0x00 targetKeyID 0x00 signerUserID 0x00 signerKeyID → signature (targetKeyID: device ID or cross-signing public key)
//	todevice      userID 0x00 deviceID 0x00 streamPos → queued to-device message (JSON)
//	todevicetxns  userID 0x00 deviceID 0x00 txnID → streamPos (sender's txn, for idempotency)
//	backupversions userID 0x00 version (u64) → keys.backupVersion (JSON); the highest is current
//	backupkeys    userID 0x00 version (u64) 0x00 roomID 0x00 sessionID → KeyBackupData (JSON)
//	pushrules     userID → push.stored (JSON: the user's own rules, changes to server-default rules)
//	pushlog       userID 0x00 roomID 0x00 streamPos → push notification record (0x01, flags, ts, thread, actions
//	              as JSON or a common list's number; before schema 3 also JSON {e,a,h,t,ts}: push reads both);
//	              records their user has read are deleted once 30 days old (push/prune.go)
//	pushers       userID 0x00 appID 0x00 pushkey → push.Pusher (JSON)
//	pushqueue     userID 0x00 appID 0x00 pushkey 0x00 ‖ seq (u64) → push.queued (JSON: notification, attempts, next try)
//	pushmeta      "pos" → u64 stream position the push evaluator has processed
//	searchterms   term 0x00 ‖ eventNID → posting (uvarint roomNID, field, uvarint tf, uvarint terms in field)
//	searchdocs    eventNID → indexed event (uvarint roomNID, field, sender, type, its distinct terms), to unindex on redaction
//	searchmeta    "pos" → u64 stream position the search index has consumed
//	serverkeys    serverName 0x00 keyID → a remote server's ed25519 verify key: 0x01 ‖ u64 valid_until_ts ‖ u64 expired_ts ‖ key (federation/serverkeys);
//	              serverName 0x00 → that server's last self-signed key response: 0x01 ‖ u64 fetched_at ‖ JSON (served again as a notary)
//	fedqueue      destination 0x00 ‖ seq (u64, the bucket's sequence) → 0x01 ‖ eventNID (u64): a PDU, or 0x02 ‖ {"t": edu_type, "c": content}: an EDU (federation/queue)
//	fedmeta       "pos" → u64 stream position the outbound queue has consumed; "epoch" → random hex, the txn ID prefix; "d" 0x00 destination → queue.destState (JSON: txn counters reserved, failures, last error, next try, last sent, failing since)
//	fedtxns       origin 0x00 txnID → the /send response already given (inbound transaction idempotency)
//	appservices   id → appservice.record (JSON: the registration without its tokens, the SHA-256 of as_token and hs_token, added_ts);
//	              the hs_token itself is in the daemon's secret store (appservice)
//	asqueue       id 0x00 ‖ seq (u64, the bucket's sequence) → 0x01 ‖ client event JSON, or 0x02 ‖ ephemeral event JSON (appservice transactions)
//	asmeta        "pos" → u64 stream position the appservice queue has consumed; "s" 0x00 id → appservice.queueState (JSON: next txn,
//	              the pending txn's last seq, failures, last error, next try, last success; MSC3202: device lists sent up to,
//	              the key counts last sent per user 0x00 device, the pending txn's MSC3202 part)
//	lanpins       serverName → the signing key first announced for it on the LAN, JSON {"key": "ed25519:id:base64", "pinned_ts"} (discovery, TOFU)
//	delayed       delayID → delayed.Event (JSON: owner, room, type, state key, content, delay, running since; outcome once finalised)
//	delayeddue    u64 due time (Unix ms) ‖ delayID → nil, for scheduled delayed events only: the first key is the next to send
//	delayeduser   userID 0x00 delayID → nil (a user's delayed events, scheduled and finalised)
//	delayedtxns   userID 0x00 session 0x00 txnID 0x00 roomID 0x00 eventType → delayID (a repeated scheduling request)
//
// # Damage
//
// Open refuses, with ErrDamaged, a file that is empty, shorter than the
// pages its meta page counts, or whose meta pages bbolt cannot read (see
// precheck); Check is the full page-by-page verification for 'hearth check'.
//
// Integers are big-endian so that bbolt's byte order is numeric order. The
// stream position is one global counter: every event and every change a
// /sync must see takes the next position, so "what changed since token T"
// is a range scan starting after T.
package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrLocked is returned by Open when another process holds the file.
var ErrLocked = errors.New("the data file is in use by another Hearth process")

// ErrClosed is what a write gets after Close.
var ErrClosed = errors.New("store: closed")

// DB is the open bbolt file plus the goroutine that commits writes in groups.
type DB struct {
	bolt     *bolt.DB
	writes   chan *write
	done     chan struct{}
	onCommit func(pos uint64)
	wake     func()
	shared   sync.Map // Shared's values (shared.go)
	// readers counts the open read transactions by the commits before
	// them (ReadsBefore, readtxs.go).
	readers readers
	// closing guards writes against Close: an Update that comes after it
	// (a background goroutine still finishing at shutdown) gets ErrClosed
	// instead of a send on the closed channel.
	closing sync.RWMutex
	closed  bool
	// recent are the kinds of the latest changes (changes_recent.go).
	recent recentChanges
}

type write struct {
	fn  func(*Tx) error
	err chan error
}

// Options tune Open. OnCommit, when set, is called after every durable commit
// with the highest stream position now on disk; it is how the stream package
// learns about new data without the store importing it. Wake, when set, is
// called after it and after the transaction's AfterCommit functions: the
// stream wakes its waiters there, so that the long polls an AfterCommit
// function releases are ready to run before the followers (push, search,
// the call agent) the same commit wakes (docs/performance.md, "Delivery:
// long polls first").
type Options struct {
	OnCommit func(pos uint64)
	Wake     func()
	// LockTimeout bounds the wait for the file lock held by another process.
	LockTimeout time.Duration
}

// Open opens (creating if needed) the bbolt file at path and starts the
// writer. A damaged file gives an error matching ErrDamaged, a file held by
// another process one matching ErrLocked.
func Open(path string, opts Options) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: create data dir: %w", err)
	}
	if opts.LockTimeout == 0 {
		opts.LockTimeout = 500 * time.Millisecond
	}
	if err := precheck(path, opts.LockTimeout); err != nil {
		return nil, err
	}
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout, FreelistType: bolt.FreelistMapType,
		InitialMmapSize: initialMmapSize()})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("store: %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	db := &DB{bolt: b, writes: make(chan *write, 1024), done: make(chan struct{}), onCommit: opts.OnCommit, wake: opts.Wake}
	if err := b.Update(migrate); err != nil {
		b.Close()
		return nil, fmt.Errorf("store: migrate %s: %w", path, err)
	}
	if err := db.View(func(tx *Tx) error { db.recent.start(tx.Pos()); return nil }); err != nil {
		b.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	go db.writer()
	return db, nil
}

// initialMmapSize reserves address space for the file up front, sparing
// readers the remap bbolt does under an exclusive lock each time the file
// outgrows its mapping (visible as throughput dips under sustained writes).
// On Unix the reservation costs no memory and no disk; on Windows bbolt
// grows the file to the mapping's size, so there it keeps the default.
func initialMmapSize() int {
	if runtime.GOOS == "windows" {
		return 0
	}
	return 1 << 30
}

// Close stops the writer after the writes already queued and closes the file.
func (db *DB) Close() error {
	db.closing.Lock()
	if db.closed {
		db.closing.Unlock()
		return ErrClosed
	}
	db.closed = true
	close(db.writes)
	db.closing.Unlock()
	<-db.done
	return db.bolt.Close()
}

// Size is the file's size in bytes.
func (db *DB) Size() int64 {
	var n int64
	db.bolt.View(func(tx *bolt.Tx) error { n = tx.Size(); return nil })
	return n
}

// View runs fn in a read-only transaction. Readers never wait for writers.
func (db *DB) View(fn func(*Tx) error) error {
	epoch := db.readers.begin()
	defer db.readers.end(epoch)
	return db.bolt.View(func(btx *bolt.Tx) error { return fn(&Tx{btx: btx, db: db, epoch: epoch}) })
}

// Snapshot begins a read-only transaction now, for a goroutine to use
// later: it sees the file as it is at this call, whatever commits
// meanwhile. The caller must call Done once, from the goroutine that
// last used it. Keep it short, and while it is open neither begin
// another transaction nor wait for a commit: a commit that must grow
// bbolt's mapping waits for every open read transaction, and a read
// begun meanwhile queues behind that commit.
func (db *DB) Snapshot() (*Tx, error) {
	epoch := db.readers.begin()
	btx, err := db.bolt.Begin(false)
	if err != nil {
		db.readers.end(epoch)
		return nil, fmt.Errorf("store: begin read: %w", err)
	}
	return &Tx{btx: btx, db: db, epoch: epoch}, nil
}

// Done ends a transaction from Snapshot.
func (tx *Tx) Done() {
	tx.btx.Rollback()
	tx.db.readers.end(tx.epoch)
}

// Update runs fn in a read-write transaction and returns once it is fsynced.
//
// Concurrent callers share one transaction and one fsync (group commit). fn
// may therefore run more than once: when another fn in the same group fails,
// the group is rolled back and the others are re-run on their own. fn must
// touch nothing but the transaction, and report its results through
// variables it assigns on every run.
func (db *DB) Update(ctx context.Context, fn func(*Tx) error) error {
	w := &write{fn: fn, err: make(chan error, 1)}
	db.closing.RLock()
	if db.closed {
		db.closing.RUnlock()
		return ErrClosed
	}
	select {
	case db.writes <- w:
	case <-ctx.Done():
		db.closing.RUnlock()
		return ctx.Err()
	}
	db.closing.RUnlock()
	// Once queued the write will happen; waiting for it keeps "acknowledged
	// means durable" true even if the caller's context ends meanwhile.
	return <-w.err
}

// writer drains every queued write into one transaction, commits, and
// repeats. A lone writer pays one fsync and no added delay; under load the
// queue fills during each fsync and the next commit takes all of it.
func (db *DB) writer() {
	defer close(db.done)
	for w := range db.writes {
		group := []*write{w}
	drain:
		for len(group) < 1000 {
			select {
			case w, ok := <-db.writes:
				if !ok {
					break drain
				}
				group = append(group, w)
			default:
				break drain
			}
		}
		db.commit(group)
	}
}

func (db *DB) commit(group []*write) {
	var failed *write
	var failErr error
	var pos uint64
	var committed, advanced []func()
	var changes []posKind
	err := db.bolt.Update(func(btx *bolt.Tx) error {
		tx := &Tx{btx: btx, db: db}
		tx.start = tx.Pos()
		defer func() { committed, advanced, changes = tx.committed, tx.advanced, tx.changes }()
		for _, w := range group {
			if err := w.fn(tx); err != nil {
				failed, failErr = w, err
				return err
			}
		}
		pos = tx.lastPos()
		return nil
	})
	switch {
	case failed != nil:
		failed.err <- failErr
		rest := make([]*write, 0, len(group)-1)
		for _, w := range group {
			if w != failed {
				rest = append(rest, w)
			}
		}
		if len(rest) > 0 {
			db.commit(rest)
		}
		return
	case err != nil:
		for _, w := range group {
			w.err <- fmt.Errorf("store: commit: %w", err)
		}
		return
	}
	db.recent.committed(changes, pos)
	db.readers.committed()
	for _, fn := range committed {
		fn()
	}
	if db.onCommit != nil {
		db.onCommit(pos)
	}
	for _, fn := range advanced {
		fn()
	}
	if db.wake != nil {
		db.wake()
	}
	for _, w := range group {
		w.err <- nil
	}
}
