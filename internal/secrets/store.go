package secrets

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/zalando/go-keyring"
)

// Key store modes (config key key_store).
const (
	ModeAuto    = "auto"    // the OS keyring when one answers, else a 0600 file
	ModeKeyring = "keyring" // the OS keyring or refuse to start
	ModeFile    = "file"    // a 0600 file in the data dir
)

// KeyringService names Hearth's entries in the OS keyring. The account of
// each entry is the data dir's absolute path and the secret's name, so two
// Hearths on one machine never share a secret.
const KeyringService = "Hearth"

// ErrNotFound is Store.Get's error for a secret that is not there.
var ErrNotFound = errors.New("secret not found")

// Store is where Hearth keeps secrets, each under a name.
type Store interface {
	Get(name string) (string, error) // ErrNotFound when absent
	Set(name, value string) error
	Remove(name string) error // absent is not an error
	// Where says, for people, where the secrets are.
	Where() string
}

// KeyringStore keeps secrets in the OS keyring through go-keyring:
// Keychain on macOS, Credential Manager on Windows, the Secret Service
// (GNOME Keyring, KWallet) over D-Bus on Linux. DataDir is the data dir's
// absolute path, part of every entry's account.
type KeyringStore struct{ DataDir string }

// Account is the keyring entry's account for the secret name.
func (k KeyringStore) Account(name string) string { return k.DataDir + "#" + name }

func (k KeyringStore) Get(name string) (string, error) {
	v, err := keyring.Get(KeyringService, k.Account(name))
	if errors.Is(err, keyring.ErrNotFound) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("OS keyring: %w", err)
	}
	return v, nil
}

func (k KeyringStore) Set(name, value string) error {
	if err := keyring.Set(KeyringService, k.Account(name), value); err != nil {
		return fmt.Errorf("OS keyring: %w", err)
	}
	return nil
}

func (k KeyringStore) Remove(name string) error {
	err := keyring.Delete(KeyringService, k.Account(name))
	if err != nil && !errors.Is(err, keyring.ErrNotFound) {
		return fmt.Errorf("OS keyring: %w", err)
	}
	return nil
}

func (k KeyringStore) Where() string {
	return fmt.Sprintf("the OS keyring (service %q, account %q)", KeyringService, k.Account("…"))
}

// FileStore keeps each secret in its own 0600 file in Dir, the data dir.
type FileStore struct{ Dir string }

func (f FileStore) Get(name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(f.Dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return "", ErrNotFound
	}
	return string(b), err
}

func (f FileStore) Set(name, value string) error {
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	// Write, sync, then rename and sync the directory, so neither a
	// crash nor a power cut leaves half a key, or an empty one.
	tmp := filepath.Join(f.Dir, "."+name+".tmp")
	if err := writeSynced(tmp, []byte(value)); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp, filepath.Join(f.Dir, name)); err != nil {
		return err
	}
	return syncDir(f.Dir)
}

func (f FileStore) Remove(name string) error {
	err := os.Remove(filepath.Join(f.Dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

func (f FileStore) Where() string { return "a 0600 file in " + f.Dir }

// ProbeKeyring reports whether an OS keyring answers. Looking up an entry
// that does not exist is enough: a missing keyring fails at once (on a
// headless Linux box, because there is no D-Bus session to reach).
func ProbeKeyring(dataDir string) error {
	_, err := KeyringStore{dataDir}.Get("probe")
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// Open chooses the secret store of the data dir for mode (key_store). In
// auto mode the store that already holds the signing key wins, so keys
// never silently move; a new install uses the keyring if one answers.
// warning is set when secrets end up in a file in auto mode.
func Open(dataDir, mode string) (store Store, warning string, err error) {
	return open(dataDir, mode, ProbeKeyring)
}

// open is Open with the keyring probe given, for tests.
func open(dataDir, mode string, probe func(string) error) (store Store, warning string, err error) {
	dir, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, "", fmt.Errorf("data dir: %w", err)
	}
	file, ring := FileStore{dir}, KeyringStore{dir}
	switch mode {
	case ModeFile:
		return file, "", nil
	case ModeKeyring:
		if err := probe(dir); err != nil {
			return nil, "", fmt.Errorf("key_store = keyring, but no OS keyring answers: %w", err)
		}
		return ring, "", nil
	}
	if _, err := file.Get(SigningKeyName); err == nil {
		return file, "secrets are in a 0600 file in the data dir; 'hearth keys migrate --to keyring' moves them to the OS keyring", nil
	}
	perr := probe(dir)
	if perr == nil {
		return ring, "", nil
	}
	return file, fmt.Sprintf("no OS keyring answered (%v); secrets are kept in a 0600 file in the data dir", perr), nil
}

// writeSynced writes a new 0600 file and syncs it to the disk.
func writeSynced(path string, data []byte) error {
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := fh.Write(data); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

// syncDir makes a rename in dir durable. Windows cannot open a directory
// for syncing, and its renames need no such step: there it does nothing.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return nil
	}
	defer d.Close()
	if err := d.Sync(); err != nil && runtime.GOOS != "windows" {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
