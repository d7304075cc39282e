package e2ee

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// Cross-signing key kinds, as stored and as named in "usage".
const (
	master      = "master"
	selfSigning = "self_signing"
	userSigning = "user_signing"
)

// ErrNeedUIA is returned by UploadCrossSigning when the upload would replace
// existing keys and the caller has not been through User-Interactive
// Authentication.
var ErrNeedUIA = errors.New("keys: cross-signing upload needs user-interactive auth")

// CrossSigningUpload holds the keys of POST /keys/device_signing/upload;
// absent ones are nil.
type CrossSigningUpload struct {
	Master      json.RawMessage `json:"master_key"`
	SelfSigning json.RawMessage `json:"self_signing_key"`
	UserSigning json.RawMessage `json:"user_signing_key"`
}

type crossKey struct {
	UserID     string                       `json:"user_id"`
	Usage      []string                     `json:"usage"`
	Keys       map[string]string            `json:"keys"`
	Signatures map[string]map[string]string `json:"signatures"`
}

// publicKey returns the one public key of a stored cross-signing key.
func publicKey(raw []byte) string {
	var k crossKey
	json.Unmarshal(raw, &k)
	for _, v := range k.Keys {
		return v
	}
	return ""
}

func (up CrossSigningUpload) byKind() map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	for kind, raw := range map[string]json.RawMessage{master: up.Master, selfSigning: up.SelfSigning, userSigning: up.UserSigning} {
		if len(raw) > 0 && string(raw) != "null" {
			out[kind] = raw
		}
	}
	return out
}

// checkCrossKey validates one key: the caller's, used for its kind, one
// ed25519 key named after itself, and (except the master key) signed by the
// master key whose public key is masterPub.
func checkCrossKey(raw json.RawMessage, kind, userID, masterPub string) (string, error) {
	var k crossKey
	if raw[0] != '{' || json.Unmarshal(raw, &k) != nil {
		return "", matrixerr.BadJSON(kind + "_key must be a cross-signing key object")
	}
	if k.UserID != userID {
		return "", matrixerr.InvalidParam(kind + "_key.user_id does not match the access token's user")
	}
	if !slices.Contains(k.Usage, kind) {
		return "", matrixerr.InvalidParam(kind + "_key.usage must contain " + kind)
	}
	if len(k.Keys) != 1 {
		return "", matrixerr.InvalidParam(kind + "_key must hold exactly one key")
	}
	var pub string
	for name, v := range k.Keys {
		if v == "" || name != "ed25519:"+v || strings.IndexByte(v, 0) >= 0 {
			return "", matrixerr.InvalidParam(kind + "_key.keys must map ed25519:<key> to <key>")
		}
		pub = v
	}
	if kind != master {
		if masterPub == "" {
			return "", matrixerr.MissingParam("upload a master key before " + kind + "_key")
		}
		if !verifySignature(raw, masterPub, k.Signatures[userID]["ed25519:"+masterPub]) {
			return "", invalidSignature(kind + "_key must carry a valid signature by the master key")
		}
	}
	return pub, nil
}

// UploadCrossSigning stores the user's cross-signing keys. The spec lets a
// client skip User-Interactive Authentication when the user has no master
// key yet, or when every key sent equals the one stored; otherwise, unless
// authenticated, it returns ErrNeedUIA and stores nothing. The check is made
// inside the write so that a concurrent upload cannot slip past it.
func (s *Service) UploadCrossSigning(ctx context.Context, userID string, up CrossSigningUpload, authenticated bool) error {
	keys := up.byKind()
	changed := false
	err := s.db.Update(ctx, func(tx *store.Tx) error {
		changed = false // the store may re-run this function
		stored := map[string][]byte{}
		for _, kind := range []string{master, selfSigning, userSigning} {
			stored[kind] = tx.Get(store.CrossSigning, store.Key(userID, kind))
		}
		same := true
		for kind, raw := range keys {
			if stored[kind] == nil || !jsonEqual(stored[kind], raw) {
				same = false
			}
		}
		if same {
			return nil // idempotent retry, or nothing sent
		}
		if stored[master] != nil && !authenticated {
			return ErrNeedUIA
		}
		masterPub := publicKey(stored[master])
		if raw, ok := keys[master]; ok {
			pub, err := checkCrossKey(raw, master, userID, "")
			if err != nil {
				return err
			}
			masterPub = pub
		}
		for _, kind := range []string{selfSigning, userSigning} {
			if raw, ok := keys[kind]; ok {
				if _, err := checkCrossKey(raw, kind, userID, masterPub); err != nil {
					return err
				}
			}
		}
		for kind, raw := range keys {
			if err := tx.Put(store.CrossSigning, store.Key(userID, kind), raw); err != nil {
				return err
			}
		}
		changed = true
		return markChanged(tx, userID)
	})
	if err == nil && changed {
		s.announce(ctx, DeviceListChange{UserID: userID, CrossSigning: true})
	}
	return err
}

// UploadSignatures stores signatures the signer made over device keys or
// cross-signing keys (POST /keys/signatures/upload). Each signed object
// must be the stored object plus signatures; only the signer's own
// signatures are taken, and each must verify against one of the signer's
// device or cross-signing keys (M_INVALID_SIGNATURE otherwise). A user
// signs their own devices and master key, and other users' master keys
// (with their user-signing key), also of users of other servers
// (remotesign.go). Problems with one object are reported in failures and
// do not stop the others.
func (s *Service) UploadSignatures(ctx context.Context, signer string, body map[string]map[string]json.RawMessage) (map[string]map[string]any, error) {
	var failures map[string]map[string]any
	var own DeviceListChange // what the signer signed of their own keys
	err := s.db.Update(ctx, func(tx *store.Tx) error {
		failures = map[string]map[string]any{}
		own = DeviceListChange{UserID: signer}
		fail := func(user, keyID string, e *matrixerr.Error) {
			if failures[user] == nil {
				failures[user] = map[string]any{}
			}
			failures[user][keyID] = map[string]any{"errcode": e.Code, "error": e.Message}
		}
		for user, objs := range body {
			for keyID, raw := range objs {
				if s.isRemote(user) {
					continue // remoteSignatures, below
				}
				if !s.IsLocal(user) || validID("key ID", keyID) != nil || strings.IndexByte(user, 0) >= 0 {
					fail(user, keyID, matrixerr.NotFound("unknown user or key"))
					continue
				}
				stored, isMaster := tx.Get(store.DeviceKeys, store.Key(user, keyID)), false
				if stored == nil {
					for _, kind := range []string{master, selfSigning, userSigning} {
						if v := tx.Get(store.CrossSigning, store.Key(user, kind)); v != nil && publicKey(v) == keyID {
							stored, isMaster = v, kind == master
						}
					}
				}
				if stored == nil {
					fail(user, keyID, matrixerr.NotFound("no such device or cross-signing key"))
					continue
				}
				if user != signer && !isMaster {
					fail(user, keyID, matrixerr.Forbidden("only a user's master key can be signed by another user"))
					continue
				}
				sigs, ok := signedCopy(stored, raw, signer)
				if !ok {
					fail(user, keyID, matrixerr.InvalidParam("signed object does not match the stored key or has no signature of yours"))
					continue
				}
				bad := false
				for sigKey, sig := range sigs {
					if validID("signature key", sigKey) != nil || !verifySignature(stored, signingKey(tx, signer, sigKey), sig) {
						bad = true
					}
				}
				if bad {
					fail(user, keyID, invalidSignature("a signature does not verify against a known key of the signer"))
					continue
				}
				for sigKey, sig := range sigs {
					if err := tx.Put(store.KeySignatures, store.Key(user, keyID, signer, sigKey), []byte(sig)); err != nil {
						return err
					}
				}
				if err := markChanged(tx, user); err != nil {
					return err
				}
				switch {
				case user != signer:
				case tx.Get(store.DeviceKeys, store.Key(user, keyID)) != nil:
					own.Devices = append(own.Devices, keyID)
				default:
					own.CrossSigning = true
				}
			}
		}
		return nil
	})
	if err == nil && (len(own.Devices) > 0 || own.CrossSigning) {
		s.announce(ctx, own)
	}
	if err == nil {
		err = s.remoteSignatures(ctx, signer, body, failures)
	}
	return failures, err
}

// signedCopy checks that raw is stored with signatures (and unsigned)
// aside, and returns raw's new signatures by signer.
func signedCopy(stored, raw []byte, signer string) (map[string]string, bool) {
	var a, b map[string]any
	if json.Unmarshal(stored, &a) != nil || json.Unmarshal(raw, &b) != nil || b == nil {
		return nil, false
	}
	var withSigs, storedSigs struct {
		Signatures map[string]map[string]string `json:"signatures"`
	}
	if json.Unmarshal(raw, &withSigs) != nil || len(withSigs.Signatures[signer]) == 0 {
		return nil, false
	}
	// Signatures the stored object already carries (the device's own) are
	// not new; only the others are checked and stored.
	json.Unmarshal(stored, &storedSigs)
	for k, v := range withSigs.Signatures[signer] {
		if storedSigs.Signatures[signer][k] == v {
			delete(withSigs.Signatures[signer], k)
		}
	}
	for _, m := range []map[string]any{a, b} {
		delete(m, "signatures")
		delete(m, "unsigned")
	}
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return withSigs.Signatures[signer], string(x) == string(y)
}
