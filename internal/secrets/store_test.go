package secrets

import (
	"errors"
	"strings"
	"testing"
)

func TestOpenSecretsChoosesStore(t *testing.T) {
	noKeyring := func(string) error { return errors.New("no D-Bus session") }
	keyringOK := func(string) error { return nil }
	dir := t.TempDir()

	st, warn, err := open(dir, ModeAuto, noKeyring)
	if _, ok := st.(FileStore); err != nil || !ok || !strings.Contains(warn, "no OS keyring") {
		t.Fatalf("auto without keyring: %T %q %v", st, warn, err)
	}
	st, warn, err = open(dir, ModeAuto, keyringOK)
	if _, ok := st.(KeyringStore); err != nil || !ok || warn != "" {
		t.Fatalf("auto with keyring: %T %q %v", st, warn, err)
	}
	// Keys already in a file stay there, with a hint, until migrated.
	FileStore{dir}.Set(SigningKeyName, "x")
	st, warn, _ = open(dir, ModeAuto, keyringOK)
	if _, ok := st.(FileStore); !ok || !strings.Contains(warn, "migrate") {
		t.Fatalf("auto with a key file: %T %q", st, warn)
	}

	if _, _, err := open(dir, ModeKeyring, noKeyring); err == nil || !strings.Contains(err.Error(), "no OS keyring") {
		t.Fatalf("keyring mode without keyring: %v", err)
	}
	if st, _, _ := open(dir, ModeFile, keyringOK); st.Where() != (FileStore{dir}).Where() {
		t.Fatalf("file mode: %s", st.Where())
	}
}
