package daemon

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/store"
)

// ErrRunning is returned by offline account commands while the daemon has
// the data file open.
var ErrRunning = errors.New("Hearth is running; stop it first (account commands through the running daemon arrive with the control API)")

// withAccounts opens the store of a stopped daemon for an account command.
func withAccounts(cfg Config, fn func(*account.Accounts) error) error {
	db, err := store.Open(filepath.Join(cfg.DataDir, dbFile), store.Options{})
	if errors.Is(err, store.ErrLocked) {
		return ErrRunning
	}
	if err != nil {
		return err
	}
	defer db.Close()
	return fn(account.New(db, cfg.ServerName))
}

// AddAccount creates a local account (hearth account add). An empty
// password makes a random one, which is returned.
func AddAccount(cfg Config, name, password string) (string, error) {
	if password == "" {
		password = account.RandomString(12)
	}
	err := withAccounts(cfg, func(a *account.Accounts) error {
		return a.Create(context.Background(), name, password, false)
	})
	if err != nil {
		return "", fmt.Errorf("add account %s: %w", name, err)
	}
	return password, nil
}

// SetPassword changes an account's password and logs out its devices
// (hearth account passwd).
func SetPassword(cfg Config, name, password string) (string, error) {
	if password == "" {
		password = account.RandomString(12)
	}
	err := withAccounts(cfg, func(a *account.Accounts) error {
		return a.SetPassword(context.Background(), name, password, true, "")
	})
	if err != nil {
		return "", fmt.Errorf("set password of %s: %w", name, err)
	}
	return password, nil
}

// ListAccounts returns the user IDs of every local account.
func ListAccounts(cfg Config) ([]string, error) {
	var out []string
	err := withAccounts(cfg, func(a *account.Accounts) error {
		users, err := a.List()
		for _, u := range users {
			out = append(out, a.UserID(u.Localpart))
		}
		return err
	})
	return out, err
}
