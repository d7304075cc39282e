// Package e2ee stores and routes what end-to-end encryption needs from a
// homeserver (Client-Server API §"End-to-end encryption"): device keys,
// one-time and fallback keys, cross-signing keys and the signatures on
// them, to-device message queues and server-side key backups. The server
// never sees plaintext; it keeps what clients upload and hands it to the
// clients that ask, under the spec's rules.
//
// It knows nothing of rooms. Where a rule depends on who shares a room with
// whom (which device-list changes a user is told about), the HTTP layer
// passes the answer in.
//
// Everything a /sync must see takes a stream position: a device-list change
// is an entry of kind ChangeDeviceList in the store's change log, and a
// to-device message is queued under the position it took, so the commit
// wakes long polls the usual way.
package e2ee

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// ChangeDeviceList is the change-log kind recording that a user's devices or
// keys changed; Change.Key holds the user ID.
const ChangeDeviceList = "keys.devicelist"

// Service is the key store over the bbolt file.
type Service struct {
	db         *store.DB
	serverName string
	remote     Remote // set by SetRemote (remote.go); nil while federation is off
}

// New returns the key service for users of serverName.
func New(db *store.DB, serverName string) *Service {
	return &Service{db: db, serverName: serverName}
}

// IsLocal reports whether userID belongs to this server.
func (s *Service) IsLocal(userID string) bool {
	return strings.HasPrefix(userID, "@") && strings.HasSuffix(userID, ":"+s.serverName)
}

// serverOf returns the server part of a user ID.
func serverOf(userID string) string {
	_, server, _ := strings.Cut(userID, ":")
	return server
}

// markChanged records that userID's device list changed, for /sync
// device_lists and /keys/changes.
func markChanged(tx *store.Tx, userID string) error {
	_, err := tx.AppendChange(store.Change{Kind: ChangeDeviceList, Key: userID})
	return err
}

// ChangedUsers returns the users whose device lists changed in (from, to],
// each once, in the order of their first change.
func (s *Service) ChangedUsers(from, to uint64) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	err := s.db.View(func(tx *store.Tx) error {
		return tx.ChangesSince(from, to, func(_ uint64, c store.Change) error {
			if c.Kind == ChangeDeviceList && !seen[c.Key] {
				seen[c.Key] = true
				out = append(out, c.Key)
			}
			return nil
		})
	})
	return out, err
}

// validID rejects identifiers that cannot be part of a store key: empty,
// containing NUL (the key separator) or absurdly long.
func validID(what, id string) error {
	if id == "" || strings.IndexByte(id, 0) >= 0 || len(id) > 255 {
		return matrixerr.InvalidParam("invalid " + what)
	}
	return nil
}

// prefixEach calls fn for every key/value of bucket under prefix. The
// slices are only valid during fn.
func prefixEach(tx *store.Tx, bucket, prefix []byte, fn func(k, v []byte) error) error {
	c := tx.Cursor(bucket)
	for k, v := c.Seek(prefix); k != nil && strings.HasPrefix(string(k), string(prefix)); k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

// deletePrefix removes every key of bucket under prefix.
func deletePrefix(tx *store.Tx, bucket, prefix []byte) error {
	var doomed [][]byte
	prefixEach(tx, bucket, prefix, func(k, _ []byte) error {
		doomed = append(doomed, append([]byte(nil), k...))
		return nil
	})
	for _, k := range doomed {
		if err := tx.Delete(bucket, k); err != nil {
			return err
		}
	}
	return nil
}

func putJSON(tx *store.Tx, bucket, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("keys: encode: %w", err)
	}
	return tx.Put(bucket, key, b)
}

// DeleteDevices drops everything stored for the devices: their keys,
// one-time and fallback keys, signatures on them, to-device queue and
// transaction IDs; and records a device-list change so that other users
// stop encrypting for them (Client-Server API §"Tracking the device list
// for a user"). Unknown devices are ignored.
//
// A nil deviceIDs means every device of the user (logout/all).
func (s *Service) DeleteDevices(ctx context.Context, userID string, deviceIDs []string) error {
	var ids []string
	err := s.db.Update(ctx, func(tx *store.Tx) error {
		keysWritten(tx)
		ids = deviceIDs
		if ids == nil {
			ids = storedDevices(tx, userID)
		}
		for _, d := range ids {
			if strings.IndexByte(d, 0) >= 0 {
				continue
			}
			if err := tx.Delete(store.DeviceKeys, store.Key(userID, d)); err != nil {
				return err
			}
			for _, b := range [][]byte{store.OneTimeKeys, store.FallbackKeys, store.ToDevice, store.ToDeviceTxns} {
				if err := deletePrefix(tx, b, store.Key(userID, d, "")); err != nil {
					return err
				}
			}
			if err := deletePrefix(tx, store.KeySignatures, store.Key(userID, d, "")); err != nil {
				return err
			}
		}
		if len(ids) == 0 {
			return nil
		}
		return markChanged(tx, userID)
	})
	if err == nil && len(ids) > 0 {
		s.announce(ctx, DeviceListChange{UserID: userID, Deleted: ids})
	}
	return err
}

// storedDevices lists the devices of userID that have keys or queued
// to-device messages.
func storedDevices(tx *store.Tx, userID string) []string {
	seen := map[string]bool{}
	ids := []string{}
	prefix := store.Key(userID, "")
	for _, b := range [][]byte{store.DeviceKeys, store.OneTimeKeys, store.FallbackKeys, store.ToDevice} {
		prefixEach(tx, b, prefix, func(k, _ []byte) error {
			d, _, _ := strings.Cut(string(k[len(prefix):]), "\x00")
			if !seen[d] {
				seen[d] = true
				ids = append(ids, d)
			}
			return nil
		})
	}
	return ids
}
