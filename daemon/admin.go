package daemon

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"github.com/hearth-chat/hearth/appservice"
	"time"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/e2ee"
	"github.com/hearth-chat/hearth/internal/secrets"
	"github.com/hearth-chat/hearth/internal/store"
)

// ErrRunning is returned by offline account commands while the daemon has
// the data file open.
//
//lint:ignore ST1005 "Hearth" is a name, shown to the user as the CLI's message
var ErrRunning = errors.New("Hearth is running; stop it first (commands through the running daemon arrive with the control API)")

// withAccounts opens the store of a stopped daemon for an account command.
func withAccounts(cfg Config, fn func(*account.Accounts) error) error {
	return whileStopped(&cfg, func(db *store.DB) error { return fn(account.New(db, cfg.ServerName)) })
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
	err := whileStopped(&cfg, func(db *store.DB) error {
		a := account.New(db, cfg.ServerName)
		dropped, err := a.SetPassword(context.Background(), name, password, true, "")
		if err != nil {
			return err
		}
		return dropKeys(e2ee.New(db, cfg.ServerName), a.UserID(name), dropped)
	})
	if err != nil {
		return "", fmt.Errorf("set password of %s: %w", name, err)
	}
	return password, nil
}

// dropKeys deletes the E2EE keys and to-device queues of logged-out
// devices.
func dropKeys(k *e2ee.Service, userID string, devices []string) error {
	if len(devices) == 0 {
		return nil // an empty list would mean every device to DeleteDevices
	}
	return k.DeleteDevices(context.Background(), userID, devices)
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

// KeyStatus describes where the keys are, for 'hearth keys status'.
type KeyStatus struct {
	Mode      string   `json:"mode"`
	Where     string   `json:"where"`
	KeyID     string   `json:"key_id"`
	PublicKey string   `json:"public_key"`
	OldKeys   []string `json:"old_key_ids"`
	Warning   string   `json:"warning,omitempty"`
}

// KeysStatus reads the signing key without changing anything.
func KeysStatus(cfg Config) (*KeyStatus, error) {
	store, warning, err := openSecrets(cfg)
	if err != nil {
		return nil, err
	}
	key, err := secrets.ReadSigningKey(store)
	if errors.Is(err, secrets.ErrNotFound) {
		return &KeyStatus{Mode: cfg.KeyStore, Where: store.Where(), Warning: "no signing key yet: 'hearth run' makes one"}, nil
	}
	if err != nil {
		return nil, err
	}
	st := &KeyStatus{Mode: cfg.KeyStore, Where: store.Where(), KeyID: key.ID, Warning: warning, OldKeys: []string{},
		PublicKey: base64.RawStdEncoding.EncodeToString(key.Key.Public().(ed25519.PublicKey))}
	for _, o := range key.Old {
		st.OldKeys = append(st.OldKeys, o.ID)
	}
	return st, nil
}

// MigrateKeys moves the secrets to the keyring or to a file ('hearth keys
// migrate'). The daemon must be stopped: its lock on the data file is held
// for the move. The copy is read back before the original is removed.
func MigrateKeys(cfg Config, to string) (string, error) {
	if to != KeyStoreKeyring && to != KeyStoreFile {
		return "", fmt.Errorf("migrate to keyring or file, not %q", to)
	}
	var where string
	err := whileStopped(&cfg, func(db *store.DB) error {
		// The appservices' hs_tokens go with the signing key.
		var hsTokens []string
		db.View(func(tx *store.Tx) error {
			return tx.Bucket(store.Appservices).ForEach(func(k, _ []byte) error {
				hsTokens = append(hsTokens, appservice.HSTokenSecret(string(k)))
				return nil
			})
		})
		from, _, err := openSecrets(cfg)
		if err != nil {
			return err
		}
		target := cfg
		target.KeyStore = to
		dest, _, err := openSecrets(target)
		if err != nil {
			return err
		}
		where = dest.Where()
		return secrets.Migrate(from, dest, hsTokens...)
	})
	return where, err
}

// RotateKeys makes a new signing key and keeps the old one as an old
// verify key ('hearth keys rotate'); it returns the new key ID.
func RotateKeys(cfg Config) (string, error) {
	var id string
	err := whileStopped(&cfg, func(*store.DB) error {
		store, _, err := openSecrets(cfg)
		if err != nil {
			return err
		}
		key, err := secrets.RotateSigningKey(store, time.Now())
		if err != nil {
			return err
		}
		id = key.ID
		return nil
	})
	return id, err
}

// whileStopped runs fn with the data file open, which holds its lock: no
// daemon can run meanwhile, and a running one makes this fail with
// ErrRunning.
//
// It settles cfg's server name as a start does (openStore), so fn must read
// the name from cfg after the call begins.
func whileStopped(cfg *Config, fn func(*store.DB) error) error {
	db, err := openStore(cfg, store.Options{}, nil, false)
	if errors.Is(err, store.ErrLocked) {
		return ErrRunning
	}
	if err != nil {
		return err
	}
	defer db.Close()
	return fn(db)
}
