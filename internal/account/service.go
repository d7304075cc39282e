package account

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// EnsureService makes the service account localpart (no password, marked
// Service) unless it exists. It reports whether the account is a service
// account: false when a person registered that name before it was
// reserved, whose account is then left alone.
func (a *Accounts) EnsureService(ctx context.Context, localpart, displayName string) (bool, error) {
	if err := a.ValidateLocalpart(localpart); err != nil {
		return false, err
	}
	service := false
	err := a.db.Update(ctx, func(tx *store.Tx) error {
		u, err := GetUser(tx, localpart)
		if err != nil {
			return err
		}
		if u != nil {
			service = u.Service && !u.Deactivated
			return nil
		}
		service = true
		return putJSON(tx, store.Users, []byte(localpart), User{Localpart: localpart, DisplayName: displayName,
			Service: true, CreatedTS: time.Now().UnixMilli()})
	})
	return service, err
}

// EnsureDevice records a device the daemon speaks as for a user (the
// owner's voicemail, the echo user's): it has no tokens, so nothing can
// log in as it, and clients list it among the user's devices. An
// existing device of that ID keeps its record.
func (a *Accounts) EnsureDevice(ctx context.Context, localpart, deviceID, displayName string) error {
	return a.db.Update(ctx, func(tx *store.Tx) error {
		u, err := GetUser(tx, localpart)
		if err != nil {
			return err
		}
		if u == nil || u.Deactivated {
			return matrixerr.NotFound("no such user")
		}
		key := store.Key(localpart, deviceID)
		if tx.Get(store.Devices, key) != nil {
			return nil
		}
		b, err := json.Marshal(Device{ID: deviceID, DisplayName: displayName, LastSeenTS: time.Now().UnixMilli()})
		if err != nil {
			return fmt.Errorf("account: encode device: %w", err)
		}
		return tx.Put(store.Devices, key, b)
	})
}
