package account

import (
	"context"
	"time"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// The owner's account is made at first start with a random password that
// only the first start's banner shows: a daemon started by an installer
// or the tray has no terminal, so nobody reads it. Until someone logs in
// with that password or changes it, the record says so
// (User.PasswordGenerated), and SetFirstPassword may replace it without
// the old one: the web console's welcome uses it, from a session only the
// person at this computer could open (docs/security.md). After that the
// password changes as any password does, through a Matrix client with
// user-interactive auth (Client-Server API §"Password management").

// CreateOwner makes the owner's admin account with a random password,
// recorded as generated and unused; it returns the password.
func (a *Accounts) CreateOwner(ctx context.Context, localpart string) (string, error) {
	if err := a.ValidateLocalpart(localpart); err != nil {
		return "", err
	}
	password := RandomString(12)
	hash, err := hashPassword(password)
	if err != nil {
		return "", err
	}
	u := User{Localpart: localpart, PasswordHash: hash, Admin: true, CreatedTS: time.Now().UnixMilli(),
		DisplayName: localpart, PasswordGenerated: true}
	return password, a.db.Update(ctx, func(tx *store.Tx) error {
		if tx.Get(store.Users, []byte(localpart)) != nil {
			return matrixerr.UserInUse("that user ID is taken")
		}
		return putJSON(tx, store.Users, []byte(localpart), u)
	})
}

// SetFirstPassword replaces the owner's generated password, once: it is
// refused (M_FORBIDDEN) once the generated password was used to log in or
// any password was set, and for a deactivated account. Devices stay
// logged in: they were logged in by login tokens the owner asked for, not
// with a password anybody could have seen. The check and the write are one
// transaction, and a login with the generated password records its use in
// a transaction that finds the hash it checked unchanged or fails, so of a
// login and this call racing, exactly one wins.
func (a *Accounts) SetFirstPassword(ctx context.Context, localpart, password string) error {
	if password == "" {
		return matrixerr.WeakPassword("a password is required")
	}
	hash, err := hashPassword(password)
	if err != nil {
		return err
	}
	return a.db.Update(ctx, func(tx *store.Tx) error {
		return modifyUser(tx, localpart, func(u *User) error {
			if !u.PasswordGenerated || u.Deactivated {
				return matrixerr.Forbidden("the password was already set or used: change it in a Matrix client")
			}
			u.PasswordHash, u.PasswordGenerated = hash, false
			return nil
		})
	})
}

// passwordUsed records that the generated password, whose hash is
// checked, was used to log in. Should SetFirstPassword have replaced it
// since it was checked, the login fails as with a wrong password.
func (a *Accounts) passwordUsed(localpart, checked string) error {
	return a.db.Update(context.Background(), func(tx *store.Tx) error {
		return modifyUser(tx, localpart, func(u *User) error {
			if u.PasswordHash != checked {
				return matrixerr.Forbidden("invalid username or password")
			}
			u.PasswordGenerated = false
			return nil
		})
	})
}
