package federation

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"sync"

	"github.com/hearth-chat/hearth/internal/room"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

// An inbound PDU's reference hash (its event ID, room versions 3 and
// later) and its signatures cover the same bytes: the event redacted for
// its room version, without "signatures" and "unsigned", as canonical
// JSON (Server-Server API §"Calculating the reference hash for an event"
// and §"Validating hashes and signatures on received events").
// gomatrixserverlib computes them apart, each with its own redaction and
// its own round trips through encoding/json (three canonicalisations of
// the event between parsing and a verified signature): here they are
// computed once per event and used for both, which is about half of what
// checking an event cost besides ed25519 itself.
//
// gomatrixserverlib stays the judge: it parses the event (canonical-JSON
// rules, content hash, field limits), provides the redaction algorithm,
// the canonical encoding, the cached keys and their validity rules, and
// it alone decides every event the shortcut does not accept (see
// verifySigned), so a bad signature is refused with its error as before.

// signingBytes returns the bytes an event's signatures and reference hash
// cover: the event redacted for its room version, without signatures or
// unsigned data, in canonical JSON.
func signingBytes(ver gomatrixserverlib.IRoomVersion, eventJSON []byte) ([]byte, error) {
	redacted, err := ver.RedactEventJSON(eventJSON)
	if err != nil {
		return nil, fmt.Errorf("redact: %w", err)
	}
	for _, k := range []string{"signatures", "unsigned"} {
		if redacted, err = sjson.DeleteBytes(redacted, k); err != nil {
			return nil, fmt.Errorf("strip %s: %w", k, err)
		}
	}
	return gomatrixserverlib.CanonicalJSON(redacted)
}

// withEventID returns pdu with its event ID set from signed (the bytes
// signingBytes returns for it) rather than computed again on first use,
// for room versions whose event IDs are reference hashes.
func withEventID(ver gomatrixserverlib.IRoomVersion, pdu gomatrixserverlib.PDU, signed []byte) (gomatrixserverlib.PDU, error) {
	id, ok := room.ReferenceEventID(ver, signed)
	if !ok {
		pdu.EventID() // v1 and v2: the ID is a field of the event
		return pdu, nil
	}
	return ver.NewEventFromTrustedJSONWithEventID(id, pdu.JSON(), pdu.Redacted())
}

// senderSignatureOnly reports whether the only server that must have
// signed pdu is its sender's (§"Validating hashes and signatures on
// received events"): so for every event but membership events (an invite
// must also be signed by the invitee's server, a restricted join by the
// authorising server) in room versions whose event IDs are hashes (in
// versions 1 and 2 the server that made the ID must sign too), without
// pseudonymous sender IDs. Those other events are left to
// gomatrixserverlib entirely.
func senderSignatureOnly(ver gomatrixserverlib.IRoomVersion, pdu gomatrixserverlib.PDU) bool {
	return ver.EventFormat() == gomatrixserverlib.EventFormatV2 &&
		ver.EventIDFormat() != gomatrixserverlib.EventIDFormatV1 &&
		ver.Version() != gomatrixserverlib.RoomVersionPseudoIDs &&
		pdu.Type() != spec.MRoomMember
}

// sigKeys caches, for the events of one inbound transaction, the signing
// keys of other servers as the key ring's database holds them: one store
// read per server and key ID rather than one per event. Safe for
// concurrent use by the checking workers.
type sigKeys struct {
	db gomatrixserverlib.KeyDatabase
	// authed, if set, is the check of the request that brought the
	// events (send_auth.go): nothing may be fetched before it passed.
	authed func() error

	mu   sync.Mutex
	keys map[gomatrixserverlib.PublicKeyLookupRequest]keyLookup
}

type keyLookup struct {
	res   gomatrixserverlib.PublicKeyLookupResult
	found bool
}

func newSigKeys(ring *gomatrixserverlib.KeyRing) *sigKeys {
	k := &sigKeys{keys: map[gomatrixserverlib.PublicKeyLookupRequest]keyLookup{}}
	if ring != nil {
		k.db = ring.KeyDatabase
	}
	return k
}

// get returns the cached key of server with ID keyID, if the database has
// it.
func (k *sigKeys) get(ctx context.Context, req gomatrixserverlib.PublicKeyLookupRequest, ts spec.Timestamp) (gomatrixserverlib.PublicKeyLookupResult, bool) {
	k.mu.Lock()
	l, seen := k.keys[req]
	k.mu.Unlock()
	if seen || k.db == nil {
		return l.res, l.found
	}
	got, err := k.db.FetchKeys(ctx, map[gomatrixserverlib.PublicKeyLookupRequest]spec.Timestamp{req: ts})
	if err != nil {
		return l.res, false // not remembered: the key ring may do better
	}
	l.res, l.found = got[req]
	k.mu.Lock()
	k.keys[req] = l
	k.mu.Unlock()
	return l.res, l.found
}

// verifySigned checks pdu's signatures, signed being the bytes they cover
// (signingBytes). An event only its sender's server must sign, carrying a
// signature of that server by a key the key ring's database holds that
// was valid when the event was sent (the room version's validity rule)
// and that verifies over signed, is accepted here; that is the test
// gomatrixserverlib's KeyRing applies, without its JSON round trips. Any
// other event, and any that fails here, goes to
// gomatrixserverlib.VerifyEventSignatures, which fetches keys it lacks
// and gives the error.
func (s *Service) verifySigned(ctx context.Context, ver gomatrixserverlib.IRoomVersion, pdu gomatrixserverlib.PDU, signed []byte, keys *sigKeys) error {
	if verifiedBySender(ctx, ver, pdu, signed, keys) {
		return nil
	}
	return s.verifyByKeyRing(ctx, pdu, keys)
}

// verifiedBySender is verifySigned's own check, which reads only cached
// keys and computes: true if it accepts pdu.
func verifiedBySender(ctx context.Context, ver gomatrixserverlib.IRoomVersion, pdu gomatrixserverlib.PDU, signed []byte, keys *sigKeys) bool {
	return senderSignatureOnly(ver, pdu) && signedBySender(ctx, ver, pdu, signed, keys)
}

// verifyByKeyRing is verifySigned's fallback, gomatrixserverlib's check,
// which may fetch keys from other servers.
func (s *Service) verifyByKeyRing(ctx context.Context, pdu gomatrixserverlib.PDU, keys *sigKeys) error {
	if keys.authed != nil {
		// The key ring may fetch keys from other servers.
		if err := keys.authed(); err != nil {
			return err
		}
	}
	return gomatrixserverlib.VerifyEventSignatures(ctx, pdu, s.cfg.KeyRing, userIDForSender)
}

// signedBySender reports whether pdu carries a valid signature of its
// sender's server by a key in keys.
func signedBySender(ctx context.Context, ver gomatrixserverlib.IRoomVersion, pdu gomatrixserverlib.PDU, signed []byte, keys *sigKeys) bool {
	sender, err := userIDForSender(pdu.RoomID(), pdu.SenderID())
	if err != nil || sender == nil {
		return false
	}
	server := sender.Domain()
	ok := false
	gjson.GetBytes(pdu.JSON(), "signatures").ForEach(func(name, byKey gjson.Result) bool {
		if name.String() != string(server) {
			return true
		}
		byKey.ForEach(func(keyID, sig gjson.Result) bool {
			ok = validSignature(ctx, ver, pdu, signed, keys, server, gomatrixserverlib.KeyID(keyID.String()), sig.String())
			return !ok
		})
		return !ok
	})
	return ok
}

// validSignature checks one signature of server on pdu as the KeyRing
// would with a key from its database: an ed25519 key ID, the key valid at
// the event's origin_server_ts, a signature of the right length that
// verifies.
func validSignature(ctx context.Context, ver gomatrixserverlib.IRoomVersion, pdu gomatrixserverlib.PDU, signed []byte, keys *sigKeys,
	server spec.ServerName, keyID gomatrixserverlib.KeyID, sig64 string) bool {
	if len(keyID) < len("ed25519:") || keyID[:len("ed25519:")] != "ed25519:" {
		return false
	}
	var sig spec.Base64Bytes
	if sig.Decode(sig64) != nil || len(sig) != ed25519.SignatureSize {
		return false
	}
	key, found := keys.get(ctx, gomatrixserverlib.PublicKeyLookupRequest{ServerName: server, KeyID: keyID}, pdu.OriginServerTS())
	if !found || len(key.Key) != ed25519.PublicKeySize || !key.WasValidAt(pdu.OriginServerTS(), ver.SignatureValidityCheck) {
		return false
	}
	return ed25519.Verify(ed25519.PublicKey(key.Key), signed, sig)
}
