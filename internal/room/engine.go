package room

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
	"github.com/hearth-chat/hearth/internal/stream"
)

// Engine is the room service of one homeserver.
type Engine struct {
	db         *store.DB
	notifier   *stream.Notifier
	serverName spec.ServerName
	keyID      gomatrixserverlib.KeyID
	key        ed25519.PrivateKey
	// defaultVersion is used by CreateRoom when the client names none.
	defaultVersion gomatrixserverlib.RoomVersion

	typingMu    sync.Mutex
	typingRooms map[string]*typingRoom // roomID → who is typing
	pdus        *pduCache
	now         func() time.Time

	erased  erasures     // senders who asked for erasure (read_erase.go)
	seq     sequencer    // per-room queues of sends (perform_sequencer.go)
	sliding slidingCache // bump stamps and room types for sliding sync (sliding.go)
	index   roomIndex    // rooms' last and member-event positions for sliding sync (sliding_index.go)

	pushRooms pushFactsCache    // what PushEventsAfter tells of each room (follow_push_facts.go)
	earlyPush earlyPushHook     // push's evaluation beside a send's commit (follow_push_early.go)
	earlySync earlySyncHook     // /sync's response prepared beside a send's commit (sync_early.go)
	allowed   allowedCache      // auth decisions for message events (perform_send_allowed.go)
	sendAuth  authStateCache    // auth events of message events (perform_send_authcache.go)
	observer  ephemeralObserver // who else hears of typing and receipts (perform_ephemeral_observe.go)
	spans     spanMemo          // change kinds of the spans woken /syncs ask about (sync_span.go)
	memberOf  memberRooms       // rooms of each user's last /sync build (sync_wake_mem.go)
	joined    sharedMembers     // users found joined by shared /syncs (sync_shape_mem.go)
}

// Config is what the engine needs from the daemon.
type Config struct {
	ServerName     string
	KeyID          string
	PrivateKey     ed25519.PrivateKey
	DefaultVersion string
}

// New returns the engine over db; notifier receives typing wake-ups.
// Open builds the store, a notifier its commits advance and the engine
// together, as the daemon and tests need them.
func New(db *store.DB, notifier *stream.Notifier, cfg Config) *Engine {
	v := gomatrixserverlib.RoomVersion(cfg.DefaultVersion)
	if v == "" {
		// The spec's recommended default since v1.6.
		v = gomatrixserverlib.RoomVersionV10
	}
	// The event ID and transaction ID indexes in memory are read back
	// before any write can add to them (store_eventids.go, store_txns.go).
	db.View(func(tx *store.Tx) error { eventIndexOf(tx); return nil })
	txnIndexOf(db)
	return &Engine{db: db, notifier: notifier, serverName: spec.ServerName(cfg.ServerName),
		keyID: gomatrixserverlib.KeyID(cfg.KeyID), key: cfg.PrivateKey, defaultVersion: v,
		typingRooms: map[string]*typingRoom{}, now: time.Now, pdus: newPDUCache(4096)}
}

// ServerName is the homeserver's name.
func (e *Engine) ServerName() string { return string(e.serverName) }

// DefaultVersion is the version of a room whose creator names none
// (Client-Server API §"Capabilities", m.room_versions' default).
func (e *Engine) DefaultVersion() gomatrixserverlib.RoomVersion { return e.defaultVersion }

// Info is the per-room record, stored in binary (see putRoomInfo).
type Info struct {
	NID     uint64
	ID      string
	Version gomatrixserverlib.RoomVersion
	// Extremities are the forward extremities: the events new local events
	// point at as prev_events.
	Extremities []string
	Depth       int64
	// Snapshot is the NID of the current state's snapshot.
	Snapshot uint64
	// LastPos is the stream position of the room's newest timeline event.
	LastPos uint64
	// Joined and Invited count members, for summaries and the directory.
	Joined  int
	Invited int
}

func roomInfoByNID(tx *store.Tx, nid uint64) (*Info, error) {
	noteRoomRecordRead(nid)
	b := tx.Get(store.RoomInfo, store.PutU64(nid))
	if b == nil {
		return nil, fmt.Errorf("room: info %d missing", nid)
	}
	r := recordReader{b: b}
	info := &Info{NID: r.u64(), ID: r.str(), Version: gomatrixserverlib.RoomVersion(r.str()),
		Depth: int64(r.u64()), Snapshot: r.u64(), LastPos: r.u64(), Joined: int(r.u32()), Invited: int(r.u32())}
	for n := r.u32(); n > 0 && !r.bad; n-- {
		info.Extremities = append(info.Extremities, r.str())
	}
	if err := r.err(); err != nil {
		return nil, fmt.Errorf("room: decode info %d: %w", nid, err)
	}
	return info, nil
}

// roomHeadsOf returns, for a /sync that reads the head of every room the
// user is in, the room's ID and a LastPos no lower than tx's: from the
// memo (store_roomheads.go), else from the record, read through one
// cursor (each Get would grow a cursor stack of its own).
func roomHeadsOf(tx *store.Tx) func(nid uint64) (string, uint64, error) {
	memo := headMemoOf(tx.DB())
	var seek func(key []byte) ([]byte, []byte)
	get := func(_, key []byte) []byte {
		if seek == nil {
			seek = tx.Cursor(store.RoomInfo).Seek
		}
		if k, v := seek(key); bytes.Equal(k, key) {
			return v
		}
		return nil
	}
	return func(nid uint64) (string, uint64, error) {
		if e, ok := memo.get(nid); ok {
			return e.id, e.last, nil
		}
		id, last, err := roomHeadIn(get, nid, true)
		if err == nil {
			memo.raise(nid, id, last)
		}
		return id, last, err
	}
}

// roomHeadIn reads a room record's ID (if withID) and LastPos through get
// without decoding the rest (putRoomInfo's layout: NID, ID, version,
// depth, snapshot, LastPos, …).
func roomHeadIn(get func(bucket, key []byte) []byte, nid uint64, withID bool) (string, uint64, error) {
	noteRoomRecordRead(nid)
	b := get(store.RoomInfo, store.PutU64(nid))
	if b == nil {
		return "", 0, fmt.Errorf("room: info %d missing", nid)
	}
	r := recordReader{b: b}
	r.u64()
	var id string
	if withID {
		id = r.str()
	} else {
		r.skipStr()
	}
	r.skipStr()
	r.u64()
	r.u64()
	last := r.u64()
	if err := r.err(); err != nil {
		return "", 0, fmt.Errorf("room: decode info %d: %w", nid, err)
	}
	return id, last, nil
}

// ErrUnknownRoom is the cause of the M_NOT_FOUND a read or write of a room
// this server does not know returns: callers tell it apart with errors.Is.
var ErrUnknownRoom = errors.New("unknown room")

// roomInfo returns the info of a known room, or M_NOT_FOUND caused by
// ErrUnknownRoom.
func roomInfo(tx *store.Tx, roomID string) (*Info, error) {
	nid := store.U64(tx.Get(store.Rooms, []byte(roomID)))
	if nid == 0 {
		return nil, matrixerr.NotFound("unknown room " + roomID).Because(ErrUnknownRoom)
	}
	return roomInfoByNID(tx, nid)
}

func putRoomInfo(tx *store.Tx, info *Info) error {
	w := recordWriter{b: make([]byte, 0, 128)}
	w.u64(info.NID)
	w.str(info.ID)
	w.str(string(info.Version))
	w.u64(uint64(info.Depth))
	w.u64(info.Snapshot)
	w.u64(info.LastPos)
	w.u32(uint32(info.Joined))
	w.u32(uint32(info.Invited))
	w.u32(uint32(len(info.Extremities)))
	for _, x := range info.Extremities {
		w.str(x)
	}
	// Before the commit, so that no snapshot sees this LastPos above the
	// memo's (store_roomheads.go).
	headMemoOf(tx.DB()).raise(info.NID, info.ID, info.LastPos)
	return tx.Put(store.RoomInfo, store.PutU64(info.NID), w.b)
}

// badEvent turns a gomatrixserverlib build or validation failure into the
// client error it deserves.
func badEvent(err error) error {
	var ve gomatrixserverlib.EventValidationError
	var vp *gomatrixserverlib.EventValidationError
	var bj gomatrixserverlib.BadJSONError
	switch {
	case errors.As(err, &ve), errors.As(err, &vp):
		if errors.As(err, &ve) && ve.Code == gomatrixserverlib.EventValidationTooLarge {
			return matrixerr.TooLarge("event is too large")
		}
		return matrixerr.BadJSON(err.Error())
	case errors.As(err, &bj):
		return matrixerr.BadJSON(err.Error())
	}
	return matrixerr.BadJSON(err.Error())
}

// forbidden turns an auth-rules failure into M_FORBIDDEN.
func forbidden(err error) error {
	var na *gomatrixserverlib.NotAllowed
	if errors.As(err, &na) {
		return matrixerr.Forbidden(na.Message)
	}
	return matrixerr.Forbidden(err.Error())
}

// Wait blocks until the stream moves past (pos, ephemeral) or ctx ends.
func (e *Engine) Wait(ctx context.Context, pos, ephemeral uint64) error {
	return e.notifier.Wait(ctx, pos, ephemeral)
}

// Pos returns the stream position and ephemeral counter.
func (e *Engine) Pos() (uint64, uint64) { return e.notifier.Pos() }

// EphemeralWatch returns the ephemeral counter and a channel closed when
// it next moves; commits do not close it (stream.Notifier.EphemeralWatch).
func (e *Engine) EphemeralWatch() (uint64, <-chan struct{}) { return e.notifier.EphemeralWatch() }

// SupportedVersions are the spec's stable room versions, 1 to 12. The
// gomatrixserverlib registry also holds MSC versions it marks stable; they
// are neither created nor advertised.
func SupportedVersions() []gomatrixserverlib.RoomVersion {
	return []gomatrixserverlib.RoomVersion{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"}
}
