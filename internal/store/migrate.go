package store

import (
	"bytes"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Bucket names; the package doc describes each key and value.
var (
	Meta        = []byte("meta")
	Users       = []byte("users")
	Devices     = []byte("devices")
	Tokens      = []byte("tokens")
	AccountData = []byte("accountdata")
	Filters     = []byte("filters")
	Rooms       = []byte("rooms")
	RoomInfo    = []byte("roominfo")
	Events      = []byte("events")
	EventIDs    = []byte("eventids")
	Txns        = []byte("txns")
	TxnLog      = []byte("txnlog")
	Timeline    = []byte("timeline")
	State       = []byte("state")
	Snapshots   = []byte("snapshots")
	Members     = []byte("members")
	Changes     = []byte("changes")
	Receipts    = []byte("receipts")
	Aliases     = []byte("aliases")
	Directory   = []byte("directory")
	Relations   = []byte("relations")
	MemberLog   = []byte("memberlog")
	HistoryLog  = []byte("historylog")
	// Media buckets (internal/media).
	Media        = []byte("media")
	MediaPending = []byte("mediapending")
	MediaUsage   = []byte("mediausage")
	// End-to-end encryption buckets (internal/e2ee).
	DeviceKeys     = []byte("devicekeys")
	OneTimeKeys    = []byte("otks")
	FallbackKeys   = []byte("fallbackkeys")
	CrossSigning   = []byte("crosssigning")
	KeySignatures  = []byte("keysigs")
	ToDevice       = []byte("todevice")
	ToDeviceTxns   = []byte("todevicetxns")
	BackupVersions = []byte("backupversions")
	BackupKeys     = []byte("backupkeys")
	// Push buckets (push).
	PushRules = []byte("pushrules")
	PushLog   = []byte("pushlog")
	Pushers   = []byte("pushers")
	PushQueue = []byte("pushqueue")
	PushMeta  = []byte("pushmeta")
	// Search buckets (internal/search).
	SearchTerms = []byte("searchterms")
	SearchDocs  = []byte("searchdocs")
	SearchMeta  = []byte("searchmeta")
	// Federation buckets (federation/...).
	ServerKeys = []byte("serverkeys")
	FedQueue   = []byte("fedqueue")
	FedMeta    = []byte("fedmeta")
	FedTxns    = []byte("fedtxns")
	// LAN discovery (discovery).
	LANPins = []byte("lanpins")
	// Delayed events, MSC4140 (internal/delayed).
	Delayed     = []byte("delayed")
	DelayedDue  = []byte("delayeddue")
	DelayedUser = []byte("delayeduser")
	DelayedTxns = []byte("delayedtxns")
	// Application services (appservice).
	Appservices     = []byte("appservices")
	AppserviceQueue = []byte("asqueue")
	AppserviceMeta  = []byte("asmeta")

	buckets = [][]byte{Meta, Users, Devices, Tokens, AccountData, Filters, Rooms, RoomInfo,
		Events, EventIDs, Txns, TxnLog, Timeline, State, Snapshots, Members, Changes, Receipts,
		Aliases, Directory, Relations, MemberLog, HistoryLog,
		Media, MediaPending, MediaUsage,
		DeviceKeys, OneTimeKeys, FallbackKeys, CrossSigning, KeySignatures, ToDevice, ToDeviceTxns,
		BackupVersions, BackupKeys,
		PushRules, PushLog, Pushers, PushQueue, PushMeta,
		SearchTerms, SearchDocs, SearchMeta,
		ServerKeys, FedQueue, FedMeta, FedTxns,
		LANPins,
		Delayed, DelayedDue, DelayedUser, DelayedTxns,
		Appservices, AppserviceQueue, AppserviceMeta}

	keyPos = []byte("pos")
	// EventIDsTo is the stream position up to which every stored event's
	// ID is in eventids; the IDs of later events are kept in memory by
	// the room engine, and found again from events on start
	// (internal/room/store_eventids.go).
	EventIDsTo = []byte("eventids_to")
	// TxnsTo is the stream position up to which every event sent under a
	// client's transaction ID has its key in txns (or, in files from
	// before schema 6, in txnlog); the keys of later events are kept in
	// memory by the room engine and found again from events on start
	// (internal/room/store_txns.go).
	TxnsTo    = []byte("txns_to")
	keySchema = []byte("schema")
)

// schemaVersion is the layout this code writes. A file with a newer version
// is refused rather than misread.
const schemaVersion = 6

// pushFeed is the bucket schemas 1 and 2 kept beside pushlog: userID
// 0x00 streamPos → roomID, each notification a second time in the
// user's stream order. Schema 3 answers GET /notifications and /sync's
// notified rooms from pushlog alone (Issue 15: the second put per
// recipient of every message was half the log's write cost).
var pushFeed = []byte("pushfeed")

func migrate(btx *bolt.Tx) error {
	for _, name := range buckets {
		if _, err := btx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	meta := btx.Bucket(Meta)
	have := U64(meta.Get(keySchema))
	switch {
	case have > schemaVersion:
		return fmt.Errorf("file has schema %d, this Hearth understands up to %d", have, schemaVersion)
	case have < schemaVersion:
		// Version 0 is a new file; later versions add their steps here.
		if have == 1 {
			if err := orderOneTimeKeys(btx); err != nil {
				return fmt.Errorf("migrate to schema 2: %w", err)
			}
		}
		// Schema 3: pushlog's records may be in either of push's
		// layouts (push reads both), and pushfeed is gone.
		if have >= 1 && btx.Bucket(pushFeed) != nil {
			if err := btx.DeleteBucket(pushFeed); err != nil {
				return fmt.Errorf("migrate to schema 3: %w", err)
			}
		}
		if have >= 1 && have < 4 {
			if err := receiptsByUser(btx); err != nil {
				return fmt.Errorf("migrate to schema 4: %w", err)
			}
		}
		// Schema 5: every event stored before has its ID in eventids.
		if have >= 1 && have < 5 {
			if err := meta.Put(EventIDsTo, PutU64(U64(meta.Get(keyPos)))); err != nil {
				return fmt.Errorf("migrate to schema 5: %w", err)
			}
		}
		// Schema 6: every event stored before has its transaction key in
		// txns or txnlog.
		if have >= 1 && have < 6 {
			if err := meta.Put(TxnsTo, PutU64(U64(meta.Get(keyPos)))); err != nil {
				return fmt.Errorf("migrate to schema 6: %w", err)
			}
		}
		return meta.Put(keySchema, PutU64(schemaVersion))
	}
	return nil
}

// ReceiptKey is a receipt's key in receipts: the room's NID, then the
// user, so that one user's receipts in a room are one range. /sync reads
// each room's receipts of its user for the unread counts; keyed by type
// first (schemas 1 to 3) that meant walking every member's receipts of
// the room, in every response (issue 15).
func ReceiptKey(roomNID uint64, userID, typ, threadID string) []byte {
	return NIDKey(roomNID, Key(userID, typ, threadID))
}

// ReceiptsOf is the prefix of one user's receipts in a room.
func ReceiptsOf(roomNID uint64, userID string) []byte {
	return NIDKey(roomNID, Key(userID, ""))
}

// receiptsByUser is the step from schema 3 to 4: receipts keyed by room,
// type, thread and user are keyed by ReceiptKey.
func receiptsByUser(btx *bolt.Tx) error {
	return rekey(btx.Bucket(Receipts), func(k, v []byte) ([]byte, []byte, error) {
		// The type is one of a few names and a user ID has no 0x00, but a
		// thread ID is an event ID named by an event's content and may
		// hold one: the thread is everything between the first and the
		// last separator.
		first, last := bytes.IndexByte(k[min(len(k), 8):], 0), bytes.LastIndexByte(k, 0)
		if len(k) < 8 || first < 0 || last <= 8+first {
			return nil, nil, fmt.Errorf("receipt key %q: not room, type, thread and user", k)
		}
		first += 8
		return ReceiptKey(U64(k[:8]), string(k[last+1:]), string(k[8:first]), string(k[first+1:last])), v, nil
	})
}

// rekey gives every record of b the key (and value) to returns for it:
// all the old keys are deleted before any new one is put, so a new key
// may be an old one of another record.
func rekey(b *bolt.Bucket, to func(k, v []byte) (key, value []byte, err error)) error {
	type entry struct{ old, key, value []byte }
	var all []entry
	err := b.ForEach(func(k, v []byte) error {
		key, value, err := to(k, v)
		if err != nil {
			return err
		}
		all = append(all, entry{bytes.Clone(k), key, bytes.Clone(value)})
		return nil
	})
	if err != nil {
		return err
	}
	for _, e := range all {
		if err := b.Delete(e.old); err != nil {
			return err
		}
	}
	for _, e := range all {
		if err := b.Put(e.key, e.value); err != nil {
			return err
		}
	}
	return nil
}

// orderOneTimeKeys is the step from schema 1 to 2: one-time keys are
// keyed by their upload sequence number before their key ID (OTKKey), so
// a claim takes the oldest with one seek instead of a scan of the
// device's keys. Schema 1 keyed them by key ID, with the value 0x00,
// the sequence number (8 bytes) and the JSON, or (before upload order
// was recorded) the bare JSON: those become sequence 0, the oldest.
func orderOneTimeKeys(btx *bolt.Tx) error {
	return rekey(btx.Bucket(OneTimeKeys), func(k, v []byte) ([]byte, []byte, error) {
		cut := bytes.LastIndexByte(k, 0)
		if cut < 0 {
			return nil, nil, fmt.Errorf("one-time key %q: no key ID", k)
		}
		seq, value := uint64(0), v
		if len(v) >= 9 && v[0] == 0 {
			seq, value = U64(v[1:9]), v[9:]
		}
		return OTKKey(k[:cut+1], seq, k[cut+1:]), value, nil
	})
}

// OTKKey is a one-time key's key in otks: the user 0x00 device 0x00
// algorithm 0x00 prefix, its upload sequence number, then its key ID.
func OTKKey(prefix []byte, seq uint64, keyID []byte) []byte {
	k := make([]byte, 0, len(prefix)+8+len(keyID))
	return append(append(append(k, prefix...), PutU64(seq)...), keyID...)
}
