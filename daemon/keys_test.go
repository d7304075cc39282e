package daemon

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSigningKeyRoundTripAndRotate(t *testing.T) {
	store := fileStore{t.TempDir()}
	key, created, err := loadOrCreateSigningKey(store)
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	again, created, err := loadOrCreateSigningKey(store)
	if err != nil || created || again.ID != key.ID || !again.Key.Equal(key.Key) {
		t.Fatalf("reload gave another key: %v %v", created, err)
	}
	oldID := key.ID
	if err := key.rotate(time.UnixMilli(1700000000000)); err != nil {
		t.Fatal(err)
	}
	if err := store.set(signingKeyName, key.encode()); err != nil {
		t.Fatal(err)
	}
	back, _, err := loadOrCreateSigningKey(store)
	if err != nil {
		t.Fatal(err)
	}
	if back.ID == oldID || len(back.Old) != 1 || back.Old[0].ID != oldID || back.Old[0].ExpiredTS != 1700000000000 ||
		!back.Old[0].Public.Equal(again.Key.Public()) {
		t.Fatalf("after rotate: %+v", back)
	}
	// A retired key keeps only its public half.
	s, _ := store.get(signingKeyName)
	if strings.Count(s, "public:") != 1 || strings.Contains(s, strings.Fields(strings.Split(s, "\n")[0])[2]+" 1700000000000") {
		t.Fatalf("stored form: %q", s)
	}
}

func TestDecodeRejectsGarbage(t *testing.T) {
	for _, s := range []string{"", "rsa 1 abc", "ed25519 v1 not-base64!", "ed25519 v1 AAAA",
		"ed25519 v1 " + strings.Repeat("A", 43) + "\ned25519 v0 public:xyz 5"} {
		if _, err := decodeSigningKey(s); err == nil {
			t.Errorf("decoded %q", s)
		}
	}
}

func TestOpenSecretsChoosesStore(t *testing.T) {
	noKeyring := func(string) error { return errors.New("no D-Bus session") }
	keyringOK := func(string) error { return nil }
	cfg := Defaults()
	cfg.DataDir = t.TempDir()

	cfg.KeyStore = KeyStoreAuto
	st, warn, err := openSecrets(cfg, noKeyring)
	if _, ok := st.(fileStore); err != nil || !ok || !strings.Contains(warn, "no OS keyring") {
		t.Fatalf("auto without keyring: %T %q %v", st, warn, err)
	}
	st, warn, err = openSecrets(cfg, keyringOK)
	if _, ok := st.(keyringStore); err != nil || !ok || warn != "" {
		t.Fatalf("auto with keyring: %T %q %v", st, warn, err)
	}
	// Keys already in a file stay there, with a hint, until migrated.
	fileStore{cfg.DataDir}.set(signingKeyName, "x")
	st, warn, _ = openSecrets(cfg, keyringOK)
	if _, ok := st.(fileStore); !ok || !strings.Contains(warn, "migrate") {
		t.Fatalf("auto with a key file: %T %q", st, warn)
	}

	cfg.KeyStore = KeyStoreKeyring
	if _, _, err := openSecrets(cfg, noKeyring); err == nil || !strings.Contains(err.Error(), "no OS keyring") {
		t.Fatalf("keyring mode without keyring: %v", err)
	}
	cfg.KeyStore = KeyStoreFile
	if st, _, _ := openSecrets(cfg, keyringOK); st.where() != (fileStore{cfg.DataDir}).where() {
		t.Fatalf("file mode: %s", st.where())
	}
}
