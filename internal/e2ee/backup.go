package e2ee

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// Server-side key backups (Client-Server API §"Server-side key backups").
// A user may have several versions; the highest one not deleted is the
// current one, and only it accepts new keys. Version numbers come from the
// bucket's sequence, so a deleted version's number is never reused.

// BackupInfo describes one backup version.
type BackupInfo struct {
	Algorithm string          `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	Count     int             `json:"count"`
	ETag      string          `json:"etag"`
	Version   string          `json:"version"`
}

// backupVersion is the stored record; ETag is a counter bumped on every
// change to the version's keys.
type backupVersion struct {
	Algorithm string          `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	Count     int             `json:"count"`
	ETag      uint64          `json:"etag"`
}

// SessionData is one backed-up megolm session (KeyBackupData).
type SessionData struct {
	FirstMessageIndex int64           `json:"first_message_index"`
	ForwardedCount    int64           `json:"forwarded_count"`
	IsVerified        bool            `json:"is_verified"`
	SessionData       json.RawMessage `json:"session_data"`
}

// Check validates a KeyBackupData object.
func (d *SessionData) Check() error {
	if len(d.SessionData) == 0 || d.SessionData[0] != '{' {
		return matrixerr.BadJSON("session_data must be an object")
	}
	if d.FirstMessageIndex < 0 || d.ForwardedCount < 0 {
		return matrixerr.InvalidParam("first_message_index and forwarded_count must not be negative")
	}
	return nil
}

// better reports whether d should replace old under the spec's rules: a
// verified key beats an unverified one; then the lower first_message_index
// wins; then the lower forwarded_count.
func (d *SessionData) better(old *SessionData) bool {
	if d.IsVerified != old.IsVerified {
		return d.IsVerified
	}
	if d.FirstMessageIndex != old.FirstMessageIndex {
		return d.FirstMessageIndex < old.FirstMessageIndex
	}
	return d.ForwardedCount < old.ForwardedCount
}

func versionKey(user string, v uint64) []byte {
	return append(store.Key(user, ""), store.PutU64(v)...)
}

func backupKeyPrefix(user string, v uint64) []byte { return append(versionKey(user, v), 0) }

func parseVersion(s string) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v == 0 {
		return 0, matrixerr.NotFound("unknown backup version")
	}
	return v, nil
}

func getVersion(tx *store.Tx, user string, v uint64) (*backupVersion, error) {
	b := tx.Get(store.BackupVersions, versionKey(user, v))
	if b == nil {
		return nil, matrixerr.NotFound("unknown backup version")
	}
	var bv backupVersion
	if err := json.Unmarshal(b, &bv); err != nil {
		return nil, fmt.Errorf("keys: decode backup version: %w", err)
	}
	return &bv, nil
}

// currentVersion returns the user's highest backup version, or 0.
func currentVersion(tx *store.Tx, user string) uint64 {
	prefix := store.Key(user, "")
	c := tx.Cursor(store.BackupVersions)
	k, _ := c.Seek(append(append([]byte(nil), prefix...), 0xff))
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	if k == nil || !strings.HasPrefix(string(k), string(prefix)) || len(k) != len(prefix)+8 {
		return 0
	}
	return store.U64(k[len(prefix):])
}

// CreateBackup makes a new version, which becomes the current one.
func (s *Service) CreateBackup(ctx context.Context, user, algorithm string, authData json.RawMessage) (string, error) {
	if algorithm == "" {
		return "", matrixerr.MissingParam("algorithm is required")
	}
	if len(authData) == 0 || authData[0] != '{' {
		return "", matrixerr.BadJSON("auth_data must be an object")
	}
	var version uint64
	err := s.db.Update(ctx, func(tx *store.Tx) error {
		v, err := tx.NextID(store.BackupVersions)
		if err != nil {
			return err
		}
		version = v
		return putJSON(tx, store.BackupVersions, versionKey(user, v), backupVersion{Algorithm: algorithm, AuthData: authData})
	})
	return strconv.FormatUint(version, 10), err
}

// Backup returns a version's description; version "" means the current one.
func (s *Service) Backup(user, version string) (*BackupInfo, error) {
	var info *BackupInfo
	err := s.db.View(func(tx *store.Tx) error {
		var v uint64
		if version == "" {
			if v = currentVersion(tx, user); v == 0 {
				return matrixerr.NotFound("no backup exists")
			}
		} else {
			var err error
			if v, err = parseVersion(version); err != nil {
				return err
			}
		}
		bv, err := getVersion(tx, user, v)
		if err != nil {
			return err
		}
		info = bv.info(v)
		return nil
	})
	return info, err
}

func (bv *backupVersion) info(v uint64) *BackupInfo {
	return &BackupInfo{Algorithm: bv.Algorithm, AuthData: bv.AuthData, Count: bv.Count,
		ETag: strconv.FormatUint(bv.ETag, 10), Version: strconv.FormatUint(v, 10)}
}

// UpdateBackup replaces a version's auth_data; the algorithm must stay the
// same, and a version in the body must match the path.
func (s *Service) UpdateBackup(ctx context.Context, user, version, bodyVersion, algorithm string, authData json.RawMessage) error {
	if bodyVersion != "" && bodyVersion != version {
		return matrixerr.InvalidParam("version in the body does not match the path")
	}
	if len(authData) == 0 || authData[0] != '{' {
		return matrixerr.BadJSON("auth_data must be an object")
	}
	v, err := parseVersion(version)
	if err != nil {
		return err
	}
	return s.db.Update(ctx, func(tx *store.Tx) error {
		bv, err := getVersion(tx, user, v)
		if err != nil {
			return err
		}
		if algorithm != bv.Algorithm {
			return matrixerr.InvalidParam("algorithm cannot change; create a new backup version")
		}
		bv.AuthData = authData
		return putJSON(tx, store.BackupVersions, versionKey(user, v), bv)
	})
}

// DeleteBackup removes a version and all its keys; deleting a version that
// was already deleted succeeds, one that never existed is M_NOT_FOUND.
func (s *Service) DeleteBackup(ctx context.Context, user, version string) error {
	v, err := parseVersion(version)
	if err != nil {
		return err
	}
	return s.db.Update(ctx, func(tx *store.Tx) error {
		if tx.Get(store.BackupVersions, versionKey(user, v)) == nil {
			if v <= tx.Bucket(store.BackupVersions).Sequence() {
				return nil
			}
			return matrixerr.NotFound("unknown backup version")
		}
		if err := tx.Delete(store.BackupVersions, versionKey(user, v)); err != nil {
			return err
		}
		return deletePrefix(tx, store.BackupKeys, backupKeyPrefix(user, v))
	})
}

// wrongVersion is the spec's 403 for writing to a version that is not the
// current one.
func wrongVersion(current uint64) error {
	e := &matrixerr.Error{Status: http.StatusForbidden, Code: "M_WRONG_ROOM_KEYS_VERSION",
		Message: "that is not the current backup version"}
	e.Extra = map[string]any{"current_version": strconv.FormatUint(current, 10)}
	return e
}
