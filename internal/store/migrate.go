package store

import (
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
	// End-to-end encryption buckets (internal/keys).
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
	PushFeed  = []byte("pushfeed")
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

	buckets = [][]byte{Meta, Users, Devices, Tokens, AccountData, Filters, Rooms, RoomInfo,
		Events, EventIDs, Txns, Timeline, State, Snapshots, Members, Changes, Receipts,
		Aliases, Directory, Relations, MemberLog, HistoryLog,
		Media, MediaPending, MediaUsage,
		DeviceKeys, OneTimeKeys, FallbackKeys, CrossSigning, KeySignatures, ToDevice, ToDeviceTxns,
		BackupVersions, BackupKeys,
		PushRules, PushLog, PushFeed, Pushers, PushQueue, PushMeta,
		SearchTerms, SearchDocs, SearchMeta,
		ServerKeys, FedQueue, FedMeta, FedTxns,
		LANPins}

	keyPos    = []byte("pos")
	keySchema = []byte("schema")
)

// schemaVersion is the layout this code writes. A file with a newer version
// is refused rather than misread.
const schemaVersion = 1

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
		return meta.Put(keySchema, PutU64(schemaVersion))
	}
	return nil
}
