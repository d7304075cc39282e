package daemon

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"github.com/hearth-chat/hearth/internal/secrets"
	"github.com/hearth-chat/hearth/internal/store"
)

// ErrDataDir matches (errors.Is) the errors that mean the data dir cannot
// be served as it is: its hearth.db is damaged, or it belongs to another
// server name. The error's text is one line saying what to do; cmd/hearth
// exits with its own code for these.
var ErrDataDir = errors.New("the data dir cannot be used as it is")

type dataDirError struct{ err error }

func (e *dataDirError) Error() string        { return e.err.Error() }
func (e *dataDirError) Unwrap() error        { return e.err }
func (e *dataDirError) Is(target error) bool { return target == ErrDataDir }

// openStore opens the data dir's file and settles the server name with
// it: every start, and every offline command, goes through here. key is
// the signing key when the caller has it (a start), and keyCreated says
// that the caller just made it; a nil key is loaded, or made, only if the
// data dir has no recorded name.
func openStore(cfg *Config, opts store.Options, key *secrets.SigningKey, keyCreated bool) (*store.DB, error) {
	path := filepath.Join(cfg.DataDir, dbFile)
	// A new install: no hearth.db yet (a data dir wiped while its key
	// stayed in the OS keyring is one too), or a signing key made just now.
	_, statErr := os.Stat(path)
	fresh := errors.Is(statErr, os.ErrNotExist)
	newInstall := fresh || keyCreated
	db, err := store.Open(path, opts)
	if fresh && (errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)) {
		// A first start on a full disk got as far as creating the file:
		// left there, the partial file would make the next start, with
		// space freed, refuse it as a damaged hearth.db. It holds
		// nothing yet.
		os.Remove(path)
	}
	if errors.Is(err, store.ErrDamaged) {
		return nil, &dataDirError{err}
	}
	if err != nil {
		return nil, err
	}
	if err := settleServerName(db, cfg, key, newInstall); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// settleServerName records the server name at the first start of a data
// dir (or the first start after an upgrade from a Hearth that did not
// record it: those files hold data signed under the configured name, so
// recording that name is right). Later, a configured name that differs is
// refused: user IDs, room state and signatures in the file all carry the
// recorded one, and serving them under another would break every room.
// When no name was configured the machine name only stood in, so the
// recorded one wins: renaming the machine does not break the install.
//
// A new install with no configured name records lanServerName: the
// machine name, a suffix from the signing key, .local. An existing data
// dir keeps its recorded name, or, from before names were recorded (a
// hearth.db and a key, no name), the bare machine name it was using.
func settleServerName(db *store.DB, cfg *Config, key *secrets.SigningKey, newInstall bool) error {
	recorded, err := db.ServerName()
	if err != nil {
		return fmt.Errorf("read the recorded server name: %w", err)
	}
	if recorded == "" && cfg.serverNameDefault && key == nil {
		sec, _, err := openSecrets(*cfg)
		if err != nil {
			return err
		}
		var created bool
		if key, created, err = secrets.LoadOrCreateSigningKey(sec); err != nil {
			return err
		}
		newInstall = newInstall || created
	}
	switch {
	case recorded == "" && cfg.serverNameDefault && newInstall:
		cfg.ServerName = lanServerName(cfg.ServerName, key.Key.Public().(ed25519.PublicKey))
		if _, err := db.RecordServerName(context.Background(), cfg.ServerName); err != nil {
			return fmt.Errorf("record the server name: %w", err)
		}
	case recorded == "":
		name := cfg.ServerName
		if cfg.serverNameDefault && cfg.serverNameLegacy != "" && cfg.serverNameLegacy != name {
			// An upgraded data dir's data carries the old default name,
			// which the machine name no longer maps to when it holds
			// characters a server name may not ("my_box" → "my-box").
			upgraded, err := holdsUsers(db)
			if err != nil {
				return fmt.Errorf("read the data dir: %w", err)
			}
			if upgraded {
				name = cfg.serverNameLegacy
			}
		}
		if _, err := db.RecordServerName(context.Background(), name); err != nil {
			return fmt.Errorf("record the server name: %w", err)
		}
		cfg.serverNameFromData = name != cfg.ServerName
		cfg.ServerName = name
	case recorded == cfg.ServerName:
	case cfg.serverNameDefault:
		slog.Debug("using the server name recorded in the data dir", "server_name", recorded, "machine_name", cfg.ServerName)
		cfg.ServerName, cfg.serverNameFromData = recorded, true
	default:
		return &dataDirError{fmt.Errorf("the data dir %s belongs to server %q, not %q: set server_name = %s in %s "+
			"(and drop any --server-name or HEARTH_SERVER_NAME override), or use a new data dir for a new server",
			cfg.DataDir, recorded, cfg.ServerName, recorded, cfg.File)}
	}
	return nil
}

// holdsUsers reports whether the file holds anything a server name is
// part of: an account (a data dir that has started once holds its
// owner's), or a stream position past zero (events, keys, to-device
// messages). A new file holds neither.
func holdsUsers(db *store.DB) (bool, error) {
	found := false
	err := db.View(func(tx *store.Tx) error {
		k, _ := tx.Cursor(store.Users).First()
		found = k != nil || tx.Pos() > 0
		return nil
	})
	return found, err
}

// CheckData verifies the data dir's hearth.db page by page ('hearth
// check'). The daemon must be stopped: a file it holds gives ErrRunning.
// A file too damaged to open gives an ErrDataDir error.
func CheckData(cfg Config) (*store.CheckReport, error) {
	rep, err := store.Check(filepath.Join(cfg.DataDir, dbFile), 0)
	switch {
	case errors.Is(err, store.ErrLocked):
		return nil, ErrRunning
	case errors.Is(err, store.ErrDamaged):
		return nil, &dataDirError{err}
	}
	return rep, err
}
