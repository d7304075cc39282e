package e2ee

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/hearth-chat/hearth/internal/store"
)

// ToDeviceIn is ToDevice's read, inside a transaction /sync already holds
// (one read transaction per response): the device's queued messages in
// (since, now], whether any is newer than since, and whether messages at
// or before since are still queued, which the caller then deletes with
// AckToDevice after the transaction (a write cannot run inside a read).
// Returning only those after since is what ToDevice returns after its
// deletion.
func ToDeviceIn(tx *store.Tx, userID, deviceID string, since, now uint64) (msgs []json.RawMessage, news, acked bool) {
	prefix := store.Key(userID, deviceID, "")
	msgs = []json.RawMessage{}
	prefixEach(tx, store.ToDevice, prefix, func(k, v []byte) error {
		pos := store.U64(k[len(prefix):])
		switch {
		case pos > now:
			return errStop
		case since > 0 && pos <= since:
			acked = true
			return nil
		}
		news = true
		msgs = append(msgs, append(json.RawMessage(nil), v...))
		return nil
	})
	return msgs, news, acked
}

// AckToDevice deletes the device's messages at or before since, which the
// sync that returned since delivered (Client-Server API
// §"Send-to-Device messaging"): ToDevice's deletion, for a /sync that read
// with ToDeviceIn.
// It writes only when such messages are queued: a long poll calls it
// each time it starts caught up.
func (s *Service) AckToDevice(ctx context.Context, userID, deviceID string, since uint64) error {
	if since == 0 {
		return nil
	}
	prefix := store.Key(userID, deviceID, "")
	acked := false
	s.db.View(func(tx *store.Tx) error {
		k, _ := tx.Cursor(store.ToDevice).Seek(prefix)
		acked = k != nil && strings.HasPrefix(string(k), string(prefix)) && store.U64(k[len(prefix):]) <= since
		return nil
	})
	if !acked {
		return nil
	}
	return s.db.Update(ctx, func(tx *store.Tx) error {
		var doomed [][]byte
		prefixEach(tx, store.ToDevice, prefix, func(k, _ []byte) error {
			if store.U64(k[len(prefix):]) > since {
				return errStop
			}
			doomed = append(doomed, append([]byte(nil), k...))
			return nil
		})
		for _, k := range doomed {
			if err := tx.Delete(store.ToDevice, k); err != nil {
				return err
			}
		}
		return nil
	})
}

// CountsIn is Counts inside a transaction /sync already holds; it keeps
// them for CachedCounts. The maps are shared: callers must not modify them.
func CountsIn(tx *store.Tx, userID, deviceID string) (map[string]int, []string) {
	otk, fallback := otkCounts(tx, userID, deviceID), unusedFallbackTypes(tx, userID, deviceID)
	memoOf(tx.DB()).put(tx, deviceKey{userID, deviceID}, otk, fallback)
	return otk, fallback
}
