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
// attempt is told M_USER_DEACTIVATED. With erase the record also keeps
// when the user asked for their messages to be erased (ErasedAt), and
// their account data goes. It returns the IDs of the devices it deleted,
// so the caller can drop what else they own (keys).
// Leaving rooms is the caller's job: this package never touches room data.
func (a *Accounts) Deactivate(ctx context.Context, localpart string, erase bool) ([]string, error) {
	defer a.tokens.revoked() // after the commit: it may delete tokens
	var devices []string
	err := a.db.Update(ctx, func(tx *store.Tx) error {
		// Presence and the directory read the profile through this log;
		// its position is also the moment of erasure.
		pos, err := tx.AppendChange(store.Change{Kind: ChangePresence, Key: localpart})
		if err != nil {
			return err
		}
		if err := modifyUser(tx, localpart, func(u *User) error {
			u.Deactivated = true
			if erase && !u.Erased {
				u.Erased, u.ErasedPos = true, pos
			}
			u.PasswordHash = ""
			u.DisplayName, u.AvatarURL = "", ""
			u.Presence, u.StatusMsg = "offline", ""
			u.Nearby = false
			return nil
		}); err != nil {
			return err
		}
		prefix := store.Key(localpart, "")
		if devices, err = deletePrefix(tx, store.Devices, prefix); err != nil {
			return err
		}
		if err := deleteTokensWhere(tx, func(t Token) bool { return t.Localpart == localpart }); err != nil {
			return err
		}
		if !erase {
			return nil
		}
		// Erasure covers data beyond events too: the account data goes.
		_, err = deletePrefix(tx, store.AccountData, prefix)
		return err
	})
	if err == nil {
		a.profileChanged() // no longer announced to people nearby
	}
	return devices, err
}

// deletePrefix deletes every key of bucket that starts with prefix and
// returns what followed the prefix in each.
func deletePrefix(tx *store.Tx, bucket []byte, prefix []byte) ([]string, error) {
	var doomed [][]byte
	c := tx.Cursor(bucket)
	for k, _ := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, _ = c.Next() {
		doomed = append(doomed, append([]byte(nil), k...))
	}
	rest := make([]string, 0, len(doomed))
	for _, k := range doomed {
		if err := tx.Delete(bucket, k); err != nil {
			return nil, err
		}
		rest = append(rest, string(k[len(prefix):]))
	}
	return rest, nil
}

// ErasedAt reports whether a local user asked for erasure when
// deactivating, and the stream position of that request: events they
// sent are served redacted to whoever could not see them then.
func (a *Accounts) ErasedAt(userID string) (uint64, bool) {
	var pos uint64
	var erased bool
	a.db.View(func(tx *store.Tx) error {
		pos, erased = a.ErasedIn(tx, userID)
		return nil
	})
	return pos, erased
}

// ErasedIn is ErasedAt inside a transaction the caller holds (the room
// engine asks while it reads events: a second transaction there could
// wait on the writer forever).
func (a *Accounts) ErasedIn(tx *store.Tx, userID string) (uint64, bool) {
	lp := a.Localpart(userID)
	if lp == "" {
		return 0, false
	}
	u, err := GetUser(tx, lp)
	if err != nil || u == nil || !u.Erased {
		return 0, false
	}
	return u.ErasedPos, true
}

// AnyErased reports whether any user has asked for erasure.
func (a *Accounts) AnyErased() (bool, error) {
	users, err := a.List()
	for _, u := range users {
		if u.Erased {
			return true, nil
		}
	}
	return false, err
}

// errDeactivated is what every way in answers for a deactivated account.
func errDeactivated() error {
	return matrixerr.UserDeactivated("this account has been deactivated")
}
