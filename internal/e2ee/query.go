package e2ee

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/hearth-chat/hearth/internal/store"
)

// QueryResult is the body of a POST /keys/query response.
type QueryResult struct {
	DeviceKeys      map[string]map[string]map[string]any `json:"device_keys"`
	Failures        map[string]any                       `json:"failures"`
	MasterKeys      map[string]map[string]any            `json:"master_keys"`
	SelfSigningKeys map[string]map[string]any            `json:"self_signing_keys"`
	UserSigningKeys map[string]map[string]any            `json:"user_signing_keys"`
}

// Query returns the device keys (all devices when the list is empty) and
// cross-signing keys of the wanted users, with every signature stored for
// them merged in. The user-signing key is only ever shown to its owner.
// Remote users' keys are asked of their servers (remote.go), whose
// failures are listed in failures. displayName, called after the read,
// fills unsigned.device_display_name of local devices.
func (s *Service) Query(requester string, want map[string][]string, displayName func(userID, deviceID string) string) (*QueryResult, error) {
	res := &QueryResult{DeviceKeys: map[string]map[string]map[string]any{}, Failures: map[string]any{},
		MasterKeys: map[string]map[string]any{}, SelfSigningKeys: map[string]map[string]any{},
		UserSigningKeys: map[string]map[string]any{}}
	err := s.db.View(func(tx *store.Tx) error {
		for user, devices := range want {
			if !s.IsLocal(user) || strings.IndexByte(user, 0) >= 0 {
				continue
			}
			devs := map[string]map[string]any{}
			add := func(dev string, raw []byte) error {
				obj, err := withSignatures(tx, raw, user, dev)
				if err != nil {
					return err
				}
				devs[dev] = obj
				return nil
			}
			if len(devices) == 0 {
				prefix := store.Key(user, "")
				if err := prefixEach(tx, store.DeviceKeys, prefix, func(k, v []byte) error {
					return add(string(k[len(prefix):]), v)
				}); err != nil {
					return err
				}
			}
			for _, d := range devices {
				if strings.IndexByte(d, 0) >= 0 {
					continue
				}
				if v := tx.Get(store.DeviceKeys, store.Key(user, d)); v != nil {
					if err := add(d, v); err != nil {
						return err
					}
				}
			}
			res.DeviceKeys[user] = devs
			for _, kind := range []string{master, selfSigning, userSigning} {
				if kind == userSigning && user != requester {
					continue
				}
				raw := tx.Get(store.CrossSigning, store.Key(user, kind))
				if raw == nil {
					continue
				}
				obj, err := withSignatures(tx, raw, user, publicKey(raw))
				if err != nil {
					return err
				}
				map[string]map[string]map[string]any{master: res.MasterKeys, selfSigning: res.SelfSigningKeys,
					userSigning: res.UserSigningKeys}[kind][user] = obj
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// unsigned is always an object, even an empty one: servers relay the
	// device keys as given, and a relayed "unsigned": null makes the Rust
	// crypto SDK drop the device as invalid.
	for user, devs := range res.DeviceKeys {
		for dev, obj := range devs {
			unsigned := map[string]any{}
			if name := displayName(user, dev); name != "" {
				unsigned["device_display_name"] = name
			}
			obj["unsigned"] = unsigned
		}
	}
	s.queryRemote(requester, want, res)
	return res, nil
}

// withSignatures decodes a stored key object and merges in the signatures
// others uploaded for it (target keyID: a device ID or a cross-signing
// public key).
func withSignatures(tx *store.Tx, raw []byte, user, keyID string) (map[string]any, error) {
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("keys: decode stored key of %s: %w", user, err)
	}
	delete(obj, "unsigned")
	prefix := store.Key(user, keyID, "")
	err := prefixEach(tx, store.KeySignatures, prefix, func(k, v []byte) error {
		signer, sigKey, ok := strings.Cut(string(k[len(prefix):]), "\x00")
		if !ok {
			return nil
		}
		sigs, _ := obj["signatures"].(map[string]any)
		if sigs == nil {
			sigs = map[string]any{}
			obj["signatures"] = sigs
		}
		bySigner, _ := sigs[signer].(map[string]any)
		if bySigner == nil {
			bySigner = map[string]any{}
			sigs[signer] = bySigner
		}
		bySigner[sigKey] = string(v)
		return nil
	})
	return obj, err
}

// Claim takes one one-time key per (user, device, algorithm) asked for,
// deleting it, or else hands out the device's fallback key for the
// algorithm and marks it used (Client-Server API POST /keys/claim). Claims
// run inside the store's single writer, so concurrent claims can never get
// the same one-time key. Remote users' keys are claimed from their servers
// afterwards (remote.go).
func (s *Service) Claim(ctx context.Context, want map[string]map[string]string) (map[string]map[string]map[string]json.RawMessage, map[string]any, error) {
	var keys map[string]map[string]map[string]json.RawMessage
	var failures map[string]any
	err := s.db.Update(ctx, func(tx *store.Tx) error {
		keysWritten(tx)
		// Reset on every run: the store may re-run this function.
		keys, failures = map[string]map[string]map[string]json.RawMessage{}, map[string]any{}
		for user, devices := range want {
			if !s.IsLocal(user) {
				continue // claimRemote, below
			}
			for dev, alg := range devices {
				if validID("device", dev) != nil || validID("algorithm", alg) != nil || strings.IndexByte(user, 0) >= 0 {
					continue
				}
				id, key, err := claimOne(tx, user, dev, alg)
				if err != nil {
					return err
				}
				if key == nil {
					continue
				}
				if keys[user] == nil {
					keys[user] = map[string]map[string]json.RawMessage{}
				}
				keys[user][dev] = map[string]json.RawMessage{alg + ":" + id: key}
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	s.claimRemote(want, keys, failures)
	return keys, failures, nil
}

func claimOne(tx *store.Tx, user, dev, alg string) (string, json.RawMessage, error) {
	// The oldest upload first: the device's first key (store.OTKKey).
	prefix := store.Key(user, dev, alg, "")
	if k, v := tx.Cursor(store.OneTimeKeys).Seek(prefix); k != nil && len(k) > len(prefix)+8 && strings.HasPrefix(string(k), string(prefix)) {
		id, keyJSON := string(k[len(prefix)+8:]), append(json.RawMessage(nil), v...)
		if err := tx.Delete(store.OneTimeKeys, append([]byte(nil), k...)); err != nil {
			return "", nil, err
		}
		return id, keyJSON, nil
	}
	fbKey := store.Key(user, dev, alg)
	v := tx.Get(store.FallbackKeys, fbKey)
	if v == nil {
		return "", nil, nil
	}
	var fb fallback
	if err := json.Unmarshal(v, &fb); err != nil {
		return "", nil, fmt.Errorf("keys: decode fallback key: %w", err)
	}
	if !fb.Used {
		fb.Used = true
		if err := putJSON(tx, store.FallbackKeys, fbKey, fb); err != nil {
			return "", nil, err
		}
	}
	return fb.KeyID, fb.Key, nil
}
