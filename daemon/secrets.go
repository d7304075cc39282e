package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/zalando/go-keyring"
)

// Key store modes (config key key_store).
const (
	KeyStoreAuto    = "auto"    // the OS keyring when one answers, else a 0600 file
	KeyStoreKeyring = "keyring" // the OS keyring or refuse to start
	KeyStoreFile    = "file"    // a 0600 file in the data dir
)

// keyringService names Hearth's entries in the OS keyring. The account of
// each entry is the data dir's absolute path and the secret's name, so two
// Hearths on one machine never share a secret.
const keyringService = "Hearth"

var errNoSecret = errors.New("secret not found")

// secretStore is where Hearth keeps secrets: the signing key now; the
// control API credential and other secrets as they arrive.
type secretStore interface {
	get(name string) (string, error) // errNoSecret when absent
	set(name, value string) error
	remove(name string) error
	// where says, for people, where the secrets are.
	where() string
}

// keyringStore keeps secrets in the OS keyring through go-keyring:
// Keychain on macOS, Credential Manager on Windows, the Secret Service
// (GNOME Keyring, KWallet) over D-Bus on Linux.
type keyringStore struct{ dataDir string }

func (k keyringStore) account(name string) string { return k.dataDir + "#" + name }

func (k keyringStore) get(name string) (string, error) {
	v, err := keyring.Get(keyringService, k.account(name))
	if errors.Is(err, keyring.ErrNotFound) {
		return "", errNoSecret
	}
	if err != nil {
		return "", fmt.Errorf("OS keyring: %w", err)
	}
	return v, nil
}

func (k keyringStore) set(name, value string) error {
	if err := keyring.Set(keyringService, k.account(name), value); err != nil {
		return fmt.Errorf("OS keyring: %w", err)
	}
	return nil
}

func (k keyringStore) remove(name string) error {
	err := keyring.Delete(keyringService, k.account(name))
	if err != nil && !errors.Is(err, keyring.ErrNotFound) {
		return fmt.Errorf("OS keyring: %w", err)
	}
	return nil
}

func (k keyringStore) where() string {
	return fmt.Sprintf("the OS keyring (service %q, account %q)", keyringService, k.account("…"))
}

// fileStore keeps each secret in its own 0600 file in the data dir.
type fileStore struct{ dir string }

func (f fileStore) get(name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(f.dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return "", errNoSecret
	}
	return string(b), err
}

func (f fileStore) set(name, value string) error {
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	// Write then rename, so a crash never leaves half a key.
	tmp := filepath.Join(f.dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(value), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return os.Rename(tmp, filepath.Join(f.dir, name))
}

func (f fileStore) remove(name string) error {
	err := os.Remove(filepath.Join(f.dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

func (f fileStore) where() string { return "a 0600 file in " + f.dir }

// probeKeyring reports whether an OS keyring answers. Looking up an entry
// that does not exist is enough: a missing keyring fails at once (on a
// headless Linux box, because there is no D-Bus session to reach).
func probeKeyring(dataDir string) error {
	_, err := keyringStore{dataDir}.get("probe")
	if errors.Is(err, errNoSecret) {
		return nil
	}
	return err
}

// openSecrets chooses the secret store for cfg.KeyStore. In auto mode the
// store that already holds the signing key wins, so keys never silently
// move; a new install uses the keyring if one answers. warning is set when
// secrets end up in a file in auto mode.
func openSecrets(cfg Config, probe func(string) error) (store secretStore, warning string, err error) {
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, "", fmt.Errorf("data dir: %w", err)
	}
	file, ring := fileStore{dir}, keyringStore{dir}
	switch cfg.KeyStore {
	case KeyStoreFile:
		return file, "", nil
	case KeyStoreKeyring:
		if err := probe(dir); err != nil {
			return nil, "", fmt.Errorf("key_store = keyring, but no OS keyring answers: %w", err)
		}
		return ring, "", nil
	}
	if _, err := file.get(signingKeyName); err == nil {
		return file, "secrets are in a 0600 file in the data dir; 'hearth keys migrate --to keyring' moves them to the OS keyring", nil
	}
	perr := probe(dir)
	if perr == nil {
		return ring, "", nil
	}
	return file, fmt.Sprintf("no OS keyring answered (%v); secrets are kept in a 0600 file in the data dir", perr), nil
}
