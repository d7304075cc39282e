package account

import (
	"context"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// Deactivate makes an account permanently unusable (Client-Server API
// §"Account deactivation"): the password hash, every device and every
// token (access, refresh, login) go, and the profile is cleared, in one
// transaction. The user record itself stays, marked deactivated, so the
// localpart can never be registered again (M_USER_IN_USE) and a login
// attempt is told M_USER_DEACTIVATED. With erase the record also says the
// user asked for their messages to be erased. It returns the IDs of the
// devices it deleted, so the caller can drop what else they own (keys).
// Leaving rooms is the caller's job: this package never touches room data.
func (a *Accounts) Deactivate(ctx context.Context, localpart string, erase bool) ([]string, error) {
	var devices []string
	err := a.db.Update(ctx, func(tx *store.Tx) error {
		devices = nil
		if err := modifyUser(tx, localpart, func(u *User) error {
			u.Deactivated = true
			u.Erased = u.Erased || erase
			u.PasswordHash = ""
			u.DisplayName, u.AvatarURL = "", ""
			u.Presence, u.StatusMsg = "offline", ""
			return nil
		}); err != nil {
			return err
		}
		prefix := store.Key(localpart, "")
		c := tx.Cursor(store.Devices)
		for k, _ := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, _ = c.Next() {
			devices = append(devices, string(k[len(prefix):]))
		}
		for _, id := range devices {
			if err := tx.Delete(store.Devices, store.Key(localpart, id)); err != nil {
				return err
			}
		}
		if err := deleteTokensWhere(tx, func(t Token) bool { return t.Localpart == localpart }); err != nil {
			return err
		}
		// Presence and the directory read the profile through this log.
		_, err := tx.AppendChange(store.Change{Kind: ChangePresence, Key: localpart})
		return err
	})
	return devices, err
}

// errDeactivated is what every way in answers for a deactivated account.
func errDeactivated() error {
	return matrixerr.UserDeactivated("this account has been deactivated")
}
