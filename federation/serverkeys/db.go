package serverkeys

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"strings"
	"time"

	"github.com/hearth-chat/hearth/internal/store"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// The serverkeys bucket holds two kinds of entry:
//
//	serverName 0x00 keyID → keyRecord: 0x01 ‖ u64 valid_until_ts ‖ u64 expired_ts ‖ 32-byte ed25519 key
//	serverName 0x00       → the server's last self-signed key response: 0x01 ‖ u64 fetched_at ‖ JSON
//
// Key IDs are never empty (only "ed25519:" IDs are stored), so the two
// cannot collide, and a prefix scan of "serverName 0x00" reads a server's
// whole entry. Timestamps are milliseconds; 0 means "not set", as in
// gomatrixserverlib.PublicKeyLookupResult.
const recordVersion = 1

type keyRecord struct {
	Key        ed25519.PublicKey
	ValidUntil spec.Timestamp
	Expired    spec.Timestamp
}

func keyKey(server spec.ServerName, id gomatrixserverlib.KeyID) []byte {
	return store.Key(string(server), string(id))
}

func responseKey(server spec.ServerName) []byte { return store.Key(string(server), "") }

func (r keyRecord) encode() []byte {
	b := make([]byte, 0, 1+16+len(r.Key))
	b = append(b, recordVersion)
	b = append(b, store.PutU64(uint64(r.ValidUntil))...)
	b = append(b, store.PutU64(uint64(r.Expired))...)
	return append(b, r.Key...)
}

func decodeKeyRecord(b []byte) (keyRecord, bool) {
	if len(b) != 1+16+ed25519.PublicKeySize || b[0] != recordVersion {
		return keyRecord{}, false
	}
	return keyRecord{
		ValidUntil: spec.Timestamp(store.U64(b[1:9])),
		Expired:    spec.Timestamp(store.U64(b[9:17])),
		Key:        bytes.Clone(b[17:]),
	}, true
}

func (r keyRecord) equal(o keyRecord) bool {
	return r.ValidUntil == o.ValidUntil && r.Expired == o.Expired && bytes.Equal(r.Key, o.Key)
}

func (r keyRecord) result() gomatrixserverlib.PublicKeyLookupResult {
	return gomatrixserverlib.PublicKeyLookupResult{
		VerifyKey:    gomatrixserverlib.VerifyKey{Key: spec.Base64Bytes(r.Key)},
		ValidUntilTS: r.ValidUntil,
		ExpiredTS:    r.Expired,
	}
}

// merge folds a freshly learned record into the stored one. A key seen as
// expired stays expired (a replayed older response must not revive a
// retired key); for the same current key the later validity wins.
func merge(old *keyRecord, in keyRecord) keyRecord {
	if old == nil || !bytes.Equal(old.Key, in.Key) {
		return in
	}
	out := *old
	switch {
	case old.Expired != 0 && in.Expired != 0:
		out.Expired = min(old.Expired, in.Expired)
	case in.Expired != 0:
		out.Expired, out.ValidUntil = in.Expired, 0
	case old.Expired == 0:
		out.ValidUntil = max(old.ValidUntil, in.ValidUntil)
	}
	return out
}

// keyDB is the gomatrixserverlib.KeyDatabase over the serverkeys bucket.
type keyDB struct{ k *Keys }

func (d *keyDB) FetcherName() string { return "serverkeys bbolt cache" }

// FetchKeys answers from our Identity and the bucket. gomatrixserverlib's
// KeyRing refetches every non-expired key whose valid_until_ts has passed,
// even when the signature it is checking was made before that time; with a
// dead server that is a network round trip per verification, for a key
// that cannot change for that signature. So a lapsed key that still covers
// every signature asked about (atTS ≤ valid_until_ts) is presented as
// expired just after its validity: the KeyRing then uses it without a
// fetch, and WasValidAt(atTS) still holds exactly when atTS ≤
// valid_until_ts. Such answers carry both timestamps, which no fetcher
// produces, so StoreKeys can tell them from a real expiry and never writes
// them back. A lapsed key asked about for a later signature is returned as
// it is, so the KeyRing refetches it.
func (d *keyDB) FetchKeys(ctx context.Context, requests map[gomatrixserverlib.PublicKeyLookupRequest]spec.Timestamp) (map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult, error) {
	out := make(map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult, len(requests))
	now := spec.AsTimestamp(time.Now())
	err := d.k.db.View(func(tx *store.Tx) error {
		for req, atTS := range requests {
			if d.k.isLocal(req.ServerName) {
				if res, ok := d.k.ownKey(req.KeyID); ok {
					out[req] = res
				}
				continue
			}
			rec, ok := decodeKeyRecord(tx.Get(store.ServerKeys, keyKey(req.ServerName, req.KeyID)))
			if !ok {
				continue
			}
			res := rec.result()
			if rec.Expired == 0 && rec.ValidUntil <= now && atTS <= rec.ValidUntil {
				res.ExpiredTS = rec.ValidUntil + 1
			}
			out[req] = res
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("serverkeys: read cache: %w", err)
	}
	return out, nil
}

// StoreKeys caches what the fetchers found. The KeyRing passes back
// everything it used, cached keys included, on most verifications; only
// real changes are written, so verifying costs no fsync.
func (d *keyDB) StoreKeys(ctx context.Context, results map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult) error {
	return d.k.storeResults(ctx, results, nil)
}

// cacheable turns a lookup result into the record to store, or false for
// what must not be cached: our own keys, our own lapsed-key answers
// (see FetchKeys), non-ed25519 IDs (never signature-checked by CheckKeys)
// and malformed keys or names.
func cacheable(k *Keys, req gomatrixserverlib.PublicKeyLookupRequest, res gomatrixserverlib.PublicKeyLookupResult, now time.Time) (keyRecord, bool) {
	if k.isLocal(req.ServerName) || (res.ExpiredTS != 0 && res.ValidUntilTS != 0) {
		return keyRecord{}, false
	}
	if !strings.HasPrefix(string(req.KeyID), "ed25519:") || len(res.Key) != ed25519.PublicKeySize {
		return keyRecord{}, false
	}
	if !validServerName(req.ServerName) {
		return keyRecord{}, false
	}
	rec := keyRecord{Key: bytes.Clone(res.Key), ValidUntil: res.ValidUntilTS, Expired: res.ExpiredTS}
	if rec.Expired == 0 {
		rec.ValidUntil = min(rec.ValidUntil, spec.AsTimestamp(now.Add(maxCacheValidity)))
	}
	return rec, true
}

// storeResults writes the results that change the cache and, when resp is
// set, the self-signed response they came from, in one transaction.
func (k *Keys) storeResults(ctx context.Context, results map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult, resp *storedResponse) error {
	now := time.Now()
	recs := map[gomatrixserverlib.PublicKeyLookupRequest]keyRecord{}
	err := k.db.View(func(tx *store.Tx) error {
		for req, res := range results {
			rec, ok := cacheable(k, req, res, now)
			if !ok {
				continue
			}
			old, had := decodeKeyRecord(tx.Get(store.ServerKeys, keyKey(req.ServerName, req.KeyID)))
			var oldp *keyRecord
			if had {
				oldp = &old
			}
			if !had || !merge(oldp, rec).equal(old) {
				recs[req] = rec
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("serverkeys: read cache: %w", err)
	}
	if len(recs) == 0 && resp == nil {
		return nil
	}
	err = k.db.Update(ctx, func(tx *store.Tx) error {
		for req, rec := range recs {
			key := keyKey(req.ServerName, req.KeyID)
			old, had := decodeKeyRecord(tx.Get(store.ServerKeys, key))
			var oldp *keyRecord
			if had {
				oldp = &old
			}
			if err := tx.Put(store.ServerKeys, key, merge(oldp, rec).encode()); err != nil {
				return err
			}
		}
		if resp != nil {
			return tx.Put(store.ServerKeys, responseKey(resp.Keys.ServerName), resp.encode())
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("serverkeys: write cache: %w", err)
	}
	if fn := k.onLearn.Load(); fn != nil {
		learned := map[spec.ServerName]bool{}
		for req := range recs {
			learned[req.ServerName] = true
		}
		for server := range learned {
			(*fn)(server)
		}
	}
	return nil
}

// storedResponse is a server's self-signed key response and when we got
// it: a notary serves it again (with our signature added) and keeps doing
// so while the server is unreachable (§"Querying Keys Through Another
// Server").
type storedResponse struct {
	FetchedAt spec.Timestamp
	Keys      gomatrixserverlib.ServerKeys
}

func (r storedResponse) encode() []byte {
	b := make([]byte, 0, 9+len(r.Keys.Raw))
	b = append(b, recordVersion)
	b = append(b, store.PutU64(uint64(r.FetchedAt))...)
	return append(b, r.Keys.Raw...)
}

func (k *Keys) loadResponse(server spec.ServerName) (storedResponse, bool) {
	var r storedResponse
	var ok bool
	k.db.View(func(tx *store.Tx) error {
		b := tx.Get(store.ServerKeys, responseKey(server))
		if len(b) < 9 || b[0] != recordVersion {
			return nil
		}
		r.FetchedAt = spec.Timestamp(store.U64(b[1:9]))
		ok = r.Keys.UnmarshalJSON(bytes.Clone(b[9:])) == nil
		return nil
	})
	return r, ok
}

// saveResponse checks a key response that claims to come from server and
// caches it with its keys. Only a response that passes CheckKeys now (right
// name, valid_until_ts ahead, every ed25519 key self-signed) is kept.
func (k *Keys) saveResponse(ctx context.Context, server spec.ServerName, keys gomatrixserverlib.ServerKeys) error {
	now := time.Now()
	if checks, _ := gomatrixserverlib.CheckKeys(server, now, keys); !checks.AllChecksOK {
		return fmt.Errorf("serverkeys: key response from %s failed checks", server)
	}
	keys.Raw = bytes.Clone(keys.Raw)
	return k.storeResults(ctx, lookupResults(keys), &storedResponse{FetchedAt: spec.AsTimestamp(now), Keys: keys})
}

// lookupResults lists the keys of a checked response as the KeyRing sees
// them: current keys valid until valid_until_ts, old ones until expired_ts.
func lookupResults(keys gomatrixserverlib.ServerKeys) map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult {
	out := map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult{}
	for id, vk := range keys.VerifyKeys {
		out[gomatrixserverlib.PublicKeyLookupRequest{ServerName: keys.ServerName, KeyID: id}] = gomatrixserverlib.PublicKeyLookupResult{
			VerifyKey: vk, ValidUntilTS: keys.ValidUntilTS}
	}
	for id, old := range keys.OldVerifyKeys {
		out[gomatrixserverlib.PublicKeyLookupRequest{ServerName: keys.ServerName, KeyID: id}] = gomatrixserverlib.PublicKeyLookupResult{
			VerifyKey: old.VerifyKey, ExpiredTS: max(old.ExpiredTS, 1)}
	}
	return out
}

// currentKeys are a server's cached keys that are neither expired nor past
// their validity.
func (k *Keys) currentKeys(server spec.ServerName) map[gomatrixserverlib.KeyID]ed25519.PublicKey {
	out := map[gomatrixserverlib.KeyID]ed25519.PublicKey{}
	now := spec.AsTimestamp(time.Now())
	prefix := store.Key(string(server), "")
	k.db.View(func(tx *store.Tx) error {
		c := tx.Cursor(store.ServerKeys)
		for key, v := c.Seek(prefix); key != nil && bytes.HasPrefix(key, prefix); key, v = c.Next() {
			rec, ok := decodeKeyRecord(v)
			if ok && rec.Expired == 0 && rec.ValidUntil > now {
				out[gomatrixserverlib.KeyID(key[len(prefix):])] = rec.Key
			}
		}
		return nil
	})
	return out
}

// Known is the cached key keyID of server if the server has not retired
// it (no expired_ts), whatever its valid_until_ts: a key the server or a
// notary gave us over the internet. LAN discovery believes an
// announcement of a public name only with this key (issue 11, LAN-first
// routing), and must keep doing so when the internet is gone for longer
// than the key's validity, which is what LAN-first routing is for.
// Reads the cache only; never fetches.
func (k *Keys) Known(server spec.ServerName, keyID gomatrixserverlib.KeyID) (ed25519.PublicKey, bool) {
	if k.isLocal(server) {
		return nil, false
	}
	var rec keyRecord
	ok := false
	k.db.View(func(tx *store.Tx) error {
		rec, ok = decodeKeyRecord(tx.Get(store.ServerKeys, keyKey(server, keyID)))
		return nil
	})
	if !ok || rec.Expired != 0 {
		return nil, false
	}
	return rec.Key, true
}
