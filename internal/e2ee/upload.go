package e2ee

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"strings"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// maxKeysPerUpload bounds the one-time keys of one upload; clients send a
// few dozen at a time.
const maxKeysPerUpload = 1000

// Upload is a decoded and validated POST /keys/upload body.
type Upload struct {
	// DeviceKeys is the device_keys object as sent, or nil if absent.
	DeviceKeys   json.RawMessage
	OneTimeKeys  []Key
	FallbackKeys []Key
}

// Key is one one-time or fallback key: "algorithm:id" and its JSON value
// (a string for unsigned keys, an object with key and signatures otherwise).
type Key struct {
	Algorithm, ID string
	JSON          json.RawMessage
}

// deviceKeys is the shape of DeviceKeys (Client-Server API, POST /keys/upload).
type deviceKeys struct {
	UserID     string                       `json:"user_id"`
	DeviceID   string                       `json:"device_id"`
	Algorithms []string                     `json:"algorithms"`
	Keys       map[string]string            `json:"keys"`
	Signatures map[string]map[string]string `json:"signatures"`
}

// DecodeUpload parses and checks an upload for the caller's device:
// device_keys must name the caller's user and device, list algorithms and
// keys and carry the device's own signature; every one-time and fallback
// key must be "algorithm:id" with a string or an object holding a key.
// Anything else is a spec error and nothing is stored.
func DecodeUpload(body []byte, userID, deviceID string) (*Upload, error) {
	var req struct {
		DeviceKeys   json.RawMessage            `json:"device_keys"`
		OneTimeKeys  map[string]json.RawMessage `json:"one_time_keys"`
		FallbackKeys map[string]json.RawMessage `json:"fallback_keys"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, matrixerr.BadJSON("keys/upload: " + strings.TrimPrefix(err.Error(), "json: "))
	}
	up := &Upload{}
	if len(req.DeviceKeys) > 0 && !bytes.Equal(req.DeviceKeys, []byte("null")) {
		var dk deviceKeys
		if err := json.Unmarshal(req.DeviceKeys, &dk); err != nil || req.DeviceKeys[0] != '{' {
			return nil, matrixerr.BadJSON("device_keys must be an object of the spec's shape")
		}
		if err := checkDeviceKeys(&dk, userID, deviceID); err != nil {
			return nil, err
		}
		up.DeviceKeys = req.DeviceKeys
	}
	if len(req.OneTimeKeys)+len(req.FallbackKeys) > maxKeysPerUpload {
		return nil, matrixerr.InvalidParam("too many keys in one upload")
	}
	var err error
	if up.OneTimeKeys, err = decodeKeys(req.OneTimeKeys, false); err != nil {
		return nil, err
	}
	if up.FallbackKeys, err = decodeKeys(req.FallbackKeys, true); err != nil {
		return nil, err
	}
	return up, nil
}

func checkDeviceKeys(dk *deviceKeys, userID, deviceID string) error {
	switch {
	case dk.UserID != userID:
		return matrixerr.InvalidParam("device_keys.user_id does not match the access token's user")
	case dk.DeviceID != deviceID:
		return matrixerr.InvalidParam("device_keys.device_id does not match the access token's device")
	case len(dk.Algorithms) == 0:
		// A required field missing is malformed JSON for the spec's shape
		// (Complement TestUploadKey "Rejects invalid device keys").
		return matrixerr.BadJSON("device_keys.algorithms is required")
	case len(dk.Keys) == 0:
		return matrixerr.BadJSON("device_keys.keys is required")
	case len(dk.Signatures) == 0:
		return matrixerr.BadJSON("device_keys.signatures is required")
	}
	for id, k := range dk.Keys {
		alg, kid, ok := strings.Cut(id, ":")
		if !ok || alg == "" || kid != deviceID || k == "" {
			return matrixerr.InvalidParam("device_keys.keys must map <algorithm>:<device_id> to a key")
		}
	}
	if dk.Signatures[userID]["ed25519:"+deviceID] == "" {
		return matrixerr.InvalidParam("device_keys must be signed by the device's ed25519 key")
	}
	return nil
}

func decodeKeys(in map[string]json.RawMessage, fallback bool) ([]Key, error) {
	out := make([]Key, 0, len(in))
	algs := map[string]bool{}
	for name, v := range in {
		alg, id, ok := strings.Cut(name, ":")
		if !ok || validID("key algorithm", alg) != nil || validID("key ID", id) != nil || strings.Contains(alg, ":") {
			return nil, matrixerr.InvalidParam("key names must be <algorithm>:<key_id>: " + truncate(name))
		}
		if err := checkKeyValue(v); err != nil {
			return nil, err
		}
		if fallback {
			if algs[alg] {
				return nil, matrixerr.InvalidParam("at most one fallback key per algorithm")
			}
			algs[alg] = true
		}
		out = append(out, Key{Algorithm: alg, ID: id, JSON: v})
	}
	// One upload's keys are queued in key ID order: the JSON object gives
	// them none, and a fixed one keeps claims predictable.
	slices.SortFunc(out, func(a, b Key) int { return strings.Compare(a.Algorithm+"\x00"+a.ID, b.Algorithm+"\x00"+b.ID) })
	return out, nil
}

// checkKeyValue accepts a non-empty string or an object (KeyObject) with a
// non-empty "key" and its signatures.
func checkKeyValue(v json.RawMessage) error {
	var s string
	if json.Unmarshal(v, &s) == nil {
		if s == "" {
			return matrixerr.InvalidParam("empty key")
		}
		return nil
	}
	var obj struct {
		Key        string                       `json:"key"`
		Signatures map[string]map[string]string `json:"signatures"`
	}
	if len(v) == 0 || v[0] != '{' || json.Unmarshal(v, &obj) != nil || obj.Key == "" || len(obj.Signatures) == 0 {
		return matrixerr.InvalidParam("a key must be a string or a signed object with a key")
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// fallback is a stored fallback key.
type fallback struct {
	KeyID string          `json:"id"`
	Key   json.RawMessage `json:"key"`
	Used  bool            `json:"used,omitempty"`
}

// Store saves an upload for the device and returns its one-time key counts.
// Device keys may be uploaded once: the same keys again are accepted, a
// different set for the same device is refused. A one-time key ID already
// stored with another value is refused too. A fallback key replaces the
// previous one of its algorithm and counts as unused.
func (s *Service) Store(ctx context.Context, userID, deviceID string, up *Upload) (map[string]int, error) {
	var counts map[string]int
	newKeys := false
	err := s.db.Update(ctx, func(tx *store.Tx) error {
		keysWritten(tx)
		newKeys = false // the store may re-run this function
		if up.DeviceKeys != nil {
			key := store.Key(userID, deviceID)
			old := tx.Get(store.DeviceKeys, key)
			switch {
			case old == nil:
				if err := tx.Put(store.DeviceKeys, key, up.DeviceKeys); err != nil {
					return err
				}
				if err := markChanged(tx, userID); err != nil {
					return err
				}
				newKeys = true
			case !jsonEqual(old, up.DeviceKeys):
				return matrixerr.InvalidParam("this device already has different device keys")
			}
		}
		stored := map[string]json.RawMessage{} // algorithm 0x00 key ID → JSON, of this device
		for _, alg := range otkAlgorithms(up.OneTimeKeys) {
			eachOTK(tx, userID, deviceID, alg, func(id string, v []byte) {
				stored[alg+"\x00"+id] = append(json.RawMessage(nil), v...)
			})
		}
		for _, k := range up.OneTimeKeys {
			if old, ok := stored[k.Algorithm+"\x00"+k.ID]; ok {
				if !jsonEqual(old, k.JSON) {
					return matrixerr.InvalidParam("one-time key " + truncate(k.Algorithm+":"+k.ID) + " already exists with another value")
				}
				continue // the same key again keeps its place in the queue
			}
			seq, err := tx.NextID(store.OneTimeKeys)
			if err != nil {
				return err
			}
			if err := tx.Put(store.OneTimeKeys, store.OTKKey(store.Key(userID, deviceID, k.Algorithm, ""), seq, []byte(k.ID)), k.JSON); err != nil {
				return err
			}
		}
		for _, k := range up.FallbackKeys {
			if err := putJSON(tx, store.FallbackKeys, store.Key(userID, deviceID, k.Algorithm),
				fallback{KeyID: k.ID, Key: k.JSON}); err != nil {
				return err
			}
		}
		counts = otkCounts(tx, userID, deviceID)
		return nil
	})
	if err == nil && newKeys {
		s.announce(ctx, DeviceListChange{UserID: userID, Devices: []string{deviceID}})
	}
	return counts, err
}

// One-time keys are stored under their upload sequence number before
// their key ID (store.OTKKey), so that claims hand keys out oldest first
// (MSC4225, Complement TestKeyClaimOrdering) with one seek; a key ID's
// uniqueness is checked against the device's keys when it is uploaded.

// otkAlgorithms lists the algorithms of keys, once each.
func otkAlgorithms(keys []Key) []string {
	var out []string
	for _, k := range keys {
		if !slices.Contains(out, k.Algorithm) {
			out = append(out, k.Algorithm)
		}
	}
	return out
}

// eachOTK calls fn with the key ID and JSON of each one-time key the device
// holds for alg, oldest first. The JSON is valid only during the call.
func eachOTK(tx *store.Tx, userID, deviceID, alg string, fn func(id string, keyJSON []byte)) {
	prefix := store.Key(userID, deviceID, alg, "")
	prefixEach(tx, store.OneTimeKeys, prefix, func(k, v []byte) error {
		if len(k) > len(prefix)+8 {
			fn(string(k[len(prefix)+8:]), v)
		}
		return nil
	})
}

// jsonEqual compares two JSON values by meaning, not bytes.
func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// otkCounts counts the device's unclaimed one-time keys by algorithm.
// signed_curve25519 is always present: clients read a missing count as
// "unknown" rather than zero.
func otkCounts(tx *store.Tx, userID, deviceID string) map[string]int {
	counts := map[string]int{"signed_curve25519": 0}
	prefix := store.Key(userID, deviceID, "")
	prefixEach(tx, store.OneTimeKeys, prefix, func(k, _ []byte) error {
		alg, _, _ := strings.Cut(string(k[len(prefix):]), "\x00")
		counts[alg]++
		return nil
	})
	return counts
}

// unusedFallbackTypes lists the algorithms for which the device has a
// fallback key that has not been claimed.
func unusedFallbackTypes(tx *store.Tx, userID, deviceID string) []string {
	out := []string{}
	prefix := store.Key(userID, deviceID, "")
	prefixEach(tx, store.FallbackKeys, prefix, func(k, v []byte) error {
		var fb fallback
		if json.Unmarshal(v, &fb) == nil && !fb.Used {
			out = append(out, string(k[len(prefix):]))
		}
		return nil
	})
	return out
}

// Counts returns the device's one-time key counts and unused fallback key
// algorithms, as /sync reports them: from memory while no key was written
// since they were last read (counts_memo.go). The maps are shared: callers
// must not modify them.
func (s *Service) Counts(userID, deviceID string) (map[string]int, []string, error) {
	if counts, fb, ok := s.CachedCounts(userID, deviceID); ok {
		return counts, fb, nil
	}
	var counts map[string]int
	var fb []string
	err := s.db.View(func(tx *store.Tx) error {
		counts, fb = CountsIn(tx, userID, deviceID)
		return nil
	})
	return counts, fb, err
}
