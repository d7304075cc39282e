// Package serverkeys owns this server's key server endpoints and the cache
// of other servers' signing keys (Server-Server API §"Retrieving server
// keys"): it publishes our keys at /_matrix/key/v2/server, answers notary
// queries at /_matrix/key/v2/query, and gives the rest of federation a
// gomatrixserverlib KeyRing whose cache lives in the store's serverkeys
// bucket.
//
// It never signs anything but key responses, and it never asks the network
// about our own keys: those come from the Identity the daemon hands it.
package serverkeys

import (
	"crypto/ed25519"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/hearth-chat/hearth/federation/ratelimit"
	"github.com/hearth-chat/hearth/internal/store"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// Identity is this server's signing identity: the current key and the
// retired ones, which stay published in old_verify_keys so other servers
// can still check what they signed (§"Publishing Keys").
type Identity struct {
	ServerName spec.ServerName
	KeyID      gomatrixserverlib.KeyID
	Key        ed25519.PrivateKey
	Old        []OldKey
}

// OldKey is a retired signing key and when it stopped being used.
type OldKey struct {
	KeyID     gomatrixserverlib.KeyID
	Public    ed25519.PublicKey
	ExpiredTS spec.Timestamp
}

// Notary is a trusted notary ("perspective") server that we may ask for
// other servers' keys (§"Querying Keys Through Another Server"). With no
// Keys, the notary's own keys are fetched from it directly the first time
// it is needed and then read from the cache (trust on first use).
type Notary struct {
	ServerName spec.ServerName
	Keys       map[gomatrixserverlib.KeyID]ed25519.PublicKey
}

// Keys is the key server and key cache of one server identity.
type Keys struct {
	db     *store.DB
	id     Identity
	client gomatrixserverlib.KeyClient
	ring   *gomatrixserverlib.KeyRing
	log    *slog.Logger
	// notaryLimits counts the servers each client address names to the
	// notary endpoints (handlers.go).
	notaryLimits *ratelimit.Buckets[netip.Prefix]
	// onLearn is called with each server whose cached keys changed
	// (OnLearn), after the commit.
	onLearn atomic.Pointer[func(spec.ServerName)]
}

// OnLearn sets fn to be called, after the commit and without locks held,
// with each server whose cached keys a fetch changed: LAN discovery then
// checks a public name it heard on the LAN against the key just learned
// (issue 11, LAN-first routing), rather than at its next announcement.
func (k *Keys) OnLearn(fn func(spec.ServerName)) { k.onLearn.Store(&fn) }

// keyValidity is how long our /key/v2/server answers stay valid: long
// enough that peers rarely ask again, short enough that a rotation spreads
// within a day (§"Publishing Keys": avoid answers that expire within an
// hour).
const keyValidity = 24 * time.Hour

// maxCacheValidity caps a cached remote key's valid_until_ts at fetch time
// plus seven days, the longest any room version lets a key be trusted
// (room versions 5+, "Signing key validity period"), so the cache is
// refreshed at least weekly whatever the remote claims.
const maxCacheValidity = 7 * 24 * time.Hour

// New returns the key service of identity id. client fetches keys from
// other servers (usually an fclient client built with the daemon's
// transport); notaries are asked, in order, when a server cannot be reached
// directly.
func New(db *store.DB, id Identity, client gomatrixserverlib.KeyClient, notaries []Notary) *Keys {
	k := &Keys{db: db, id: id, client: client, log: slog.With("component", "serverkeys"),
		notaryLimits: ratelimit.New[netip.Prefix](notaryRate, notaryBurst, maxNotaryClients)}
	direct := &gomatrixserverlib.DirectKeyFetcher{
		Client:            recordingClient{KeyClient: client, k: k},
		IsLocalServerName: k.isLocal,
		LocalPublicKey:    spec.Base64Bytes(k.public()),
	}
	fetchers := []gomatrixserverlib.KeyFetcher{remoteOnly{KeyFetcher: direct, local: id.ServerName}}
	for _, n := range notaries {
		fetchers = append(fetchers, remoteOnly{KeyFetcher: &notaryFetcher{k: k, notary: n}, local: id.ServerName})
	}
	k.ring = &gomatrixserverlib.KeyRing{KeyDatabase: &keyDB{k: k}, KeyFetchers: fetchers}
	return k
}

// KeyRing verifies signatures of other servers (and our own) with the
// bbolt-backed cache in front of direct fetches and the notaries. It is
// safe for concurrent use.
func (k *Keys) KeyRing() *gomatrixserverlib.KeyRing { return k.ring }

func (k *Keys) isLocal(s spec.ServerName) bool { return s == k.id.ServerName }

func (k *Keys) public() ed25519.PublicKey {
	if len(k.id.Key) != ed25519.PrivateKeySize {
		return nil
	}
	return k.id.Key.Public().(ed25519.PublicKey)
}

// farFuture is the validity we give our own current key: it is ours, so it
// never needs refetching (gomatrixserverlib's DirectKeyFetcher uses the
// same date for local keys).
var farFuture = spec.AsTimestamp(time.Unix(1<<37, 0))

// ownKey answers a lookup of one of our own key IDs from the Identity, or
// reports false for an ID we never had.
func (k *Keys) ownKey(id gomatrixserverlib.KeyID) (gomatrixserverlib.PublicKeyLookupResult, bool) {
	if id == k.id.KeyID {
		if pub := k.public(); pub != nil {
			return gomatrixserverlib.PublicKeyLookupResult{
				VerifyKey:    gomatrixserverlib.VerifyKey{Key: spec.Base64Bytes(pub)},
				ValidUntilTS: farFuture,
			}, true
		}
	}
	for _, o := range k.id.Old {
		if o.KeyID == id {
			// An expired_ts of 0 would read as "not expired"; a retired key
			// without a date is treated as never valid instead.
			exp := max(o.ExpiredTS, 1)
			return gomatrixserverlib.PublicKeyLookupResult{
				VerifyKey: gomatrixserverlib.VerifyKey{Key: spec.Base64Bytes(o.Public)},
				ExpiredTS: exp,
			}, true
		}
	}
	return gomatrixserverlib.PublicKeyLookupResult{}, false
}
