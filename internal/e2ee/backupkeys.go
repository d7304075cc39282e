package e2ee

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// BackupRooms maps room ID → session ID → key data: the shape of every level
// of /room_keys/keys once the path parameters are folded in.
type BackupRooms map[string]map[string]*SessionData

// PutBackupKeys stores keys in the current version. A key already stored
// is replaced only by a better one (SessionData.better). It returns the
// version's key count and etag afterwards.
func (s *Service) PutBackupKeys(ctx context.Context, user, version string, rooms BackupRooms) (int, string, error) {
	for roomID, sessions := range rooms {
		if err := validID("room ID", roomID); err != nil {
			return 0, "", err
		}
		for sid, d := range sessions {
			if err := validID("session ID", sid); err != nil {
				return 0, "", err
			}
			if d == nil {
				return 0, "", matrixerr.BadJSON("key data must be an object")
			}
			if err := d.Check(); err != nil {
				return 0, "", err
			}
		}
	}
	var count int
	var etag string
	err := s.db.Update(ctx, func(tx *store.Tx) error {
		cur := currentVersion(tx, user)
		if cur == 0 {
			return matrixerr.NotFound("no backup exists")
		}
		if v, err := strconv.ParseUint(version, 10, 64); err != nil || v != cur {
			return wrongVersion(cur)
		}
		bv, err := getVersion(tx, user, cur)
		if err != nil {
			return err
		}
		changed := false
		for roomID, sessions := range rooms {
			for sid, d := range sessions {
				key := append(backupKeyPrefix(user, cur), store.Key(roomID, sid)...)
				if old := tx.Get(store.BackupKeys, key); old != nil {
					var o SessionData
					if json.Unmarshal(old, &o) == nil && !d.better(&o) {
						continue
					}
				} else {
					bv.Count++
				}
				if err := putJSON(tx, store.BackupKeys, key, d); err != nil {
					return err
				}
				changed = true
			}
		}
		if changed {
			bv.ETag++
			if err := putJSON(tx, store.BackupVersions, versionKey(user, cur), bv); err != nil {
				return err
			}
		}
		count, etag = bv.Count, strconv.FormatUint(bv.ETag, 10)
		return nil
	})
	return count, etag, err
}

// BackupKeys reads keys of a version: all of them (roomID ""), one room's
// (sessionID ""), or one session's.
func (s *Service) BackupKeys(user, version, roomID, sessionID string) (BackupRooms, error) {
	v, err := parseVersion(version)
	if err != nil {
		return nil, err
	}
	out := BackupRooms{}
	err = s.db.View(func(tx *store.Tx) error {
		if _, err := getVersion(tx, user, v); err != nil {
			return err
		}
		return eachBackupKey(tx, user, v, roomID, sessionID, func(_ []byte, room, sid string, raw []byte) error {
			var d SessionData
			if err := json.Unmarshal(raw, &d); err != nil {
				return fmt.Errorf("keys: decode backup key: %w", err)
			}
			if out[room] == nil {
				out[room] = map[string]*SessionData{}
			}
			out[room][sid] = &d
			return nil
		})
	})
	return out, err
}

// DeleteBackupKeys removes keys at any level and returns the count and etag
// afterwards.
func (s *Service) DeleteBackupKeys(ctx context.Context, user, version, roomID, sessionID string) (int, string, error) {
	v, err := parseVersion(version)
	if err != nil {
		return 0, "", err
	}
	var count int
	var etag string
	err = s.db.Update(ctx, func(tx *store.Tx) error {
		bv, err := getVersion(tx, user, v)
		if err != nil {
			return err
		}
		var doomed [][]byte
		eachBackupKey(tx, user, v, roomID, sessionID, func(k []byte, _, _ string, _ []byte) error {
			doomed = append(doomed, append([]byte(nil), k...))
			return nil
		})
		for _, k := range doomed {
			if err := tx.Delete(store.BackupKeys, k); err != nil {
				return err
			}
		}
		if len(doomed) > 0 {
			bv.Count -= len(doomed)
			bv.ETag++
			if err := putJSON(tx, store.BackupVersions, versionKey(user, v), bv); err != nil {
				return err
			}
		}
		count, etag = bv.Count, strconv.FormatUint(bv.ETag, 10)
		return nil
	})
	return count, etag, err
}

func eachBackupKey(tx *store.Tx, user string, v uint64, roomID, sessionID string, fn func(k []byte, room, sid string, raw []byte) error) error {
	base := backupKeyPrefix(user, v)
	if strings.IndexByte(roomID, 0) >= 0 || strings.IndexByte(sessionID, 0) >= 0 {
		return nil
	}
	prefix := base
	switch {
	case roomID != "" && sessionID != "":
		k := append(append([]byte(nil), base...), store.Key(roomID, sessionID)...)
		if raw := tx.Get(store.BackupKeys, k); raw != nil {
			return fn(k, roomID, sessionID, raw)
		}
		return nil
	case roomID != "":
		prefix = append(append([]byte(nil), base...), store.Key(roomID, "")...)
	}
	return prefixEach(tx, store.BackupKeys, prefix, func(k, raw []byte) error {
		room, sid, _ := strings.Cut(string(k[len(base):]), "\x00")
		return fn(k, room, sid, raw)
	})
}
