package daemon

import (
	"bufio"
	"bytes"
	"github.com/hearth-chat/hearth/appservice"
	"github.com/hearth-chat/hearth/internal/secrets"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// secretService starts a private D-Bus session bus and gnome-keyring's
// Secret Service on it, unlocked with a throwaway password, and points
// this process (go-keyring, through godbus) and its children at it.
// make test installs the Debian packages dbus and gnome-keyring.
func secretService(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"dbus-daemon", "gnome-keyring-daemon", "secret-tool"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is not installed (make test installs dbus, gnome-keyring and libsecret-tools)", bin)
		}
	}
	dir := t.TempDir()
	bus := exec.Command("dbus-daemon", "--session", "--nofork", "--print-address=1", "--address=unix:path="+filepath.Join(dir, "bus"))
	out, err := bus.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bus.Process.Kill(); bus.Wait() })
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("dbus-daemon address: %v", err)
	}
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", strings.TrimSpace(addr))
	t.Setenv("HOME", dir)
	t.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	t.Setenv("XDG_RUNTIME_DIR", dir)
	ring := exec.Command("gnome-keyring-daemon", "--unlock", "--components=secrets", "--foreground")
	ring.Stdin = strings.NewReader("throwaway")
	if err := ring.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ring.Process.Kill(); ring.Wait() })
	// The daemon creates and unlocks the login keyring from the password
	// shortly after starting; asking before that fails to unlock the
	// default collection, so wait for the keyring file, then for an answer
	// (generously: on a loaded machine it once took over 10 s).
	login := filepath.Join(dir, "data", "keyrings", "login.keyring")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(login); err == nil && secrets.ProbeKeyring(dir) == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Secret Service did not come up: %v", secrets.ProbeKeyring(dir))
		}
	}
}

// TestKeysInSecretService checks the signing key round-trips through a real
// Secret Service, is readable there by another client (secret-tool), and
// moves to a file and back with 'hearth keys migrate'.
func TestKeysInSecretService(t *testing.T) {
	secretService(t)
	cfg := Defaults()
	cfg.DataDir = t.TempDir()
	cfg.KeyStore = KeyStoreAuto

	st, warn, err := openSecrets(cfg)
	if _, ok := st.(secrets.KeyringStore); err != nil || !ok || warn != "" {
		t.Fatalf("auto mode with a keyring chose %T (%q, %v)", st, warn, err)
	}
	key, created, err := secrets.LoadOrCreateSigningKey(st)
	if err != nil || !created {
		t.Fatalf("create in keyring: %v", err)
	}
	// Another Secret Service client sees the same secret.
	out, err := exec.Command("secret-tool", "lookup", "service", secrets.KeyringService,
		"username", secrets.KeyringStore{DataDir: cfg.DataDir}.Account(secrets.SigningKeyName)).Output()
	if err != nil || !strings.HasPrefix(string(out), "ed25519 "+strings.TrimPrefix(key.ID, "ed25519:")) {
		t.Fatalf("secret-tool lookup: %q %v", out, err)
	}
	if _, err := (secrets.FileStore{Dir: cfg.DataDir}).Get(secrets.SigningKeyName); err == nil {
		t.Fatal("key also written to a file")
	}

	// The federation certificate lives beside the key and moves with it.
	cert, _, err := secrets.LoadOrCreateTLSCert(st, "keyring.local")
	if err != nil {
		t.Fatalf("federation certificate in keyring: %v", err)
	}
	// An appservice's hs_token lives there too, and moves with the key.
	reg := "id: br\nurl: http://127.0.0.1:9\nas_token: as-br\nhs_token: hs-br\nsender_localpart: brbot\nnamespaces: {}\n"
	if _, err := AddAppservice(cfg, []byte(reg)); err != nil {
		t.Fatalf("add appservice: %v", err)
	}
	if v, err := (secrets.KeyringStore{DataDir: cfg.DataDir}).Get(appservice.HSTokenSecret("br")); err != nil || v != "hs-br" {
		t.Fatalf("hs_token in the keyring: %q %v", v, err)
	}
	if _, err := MigrateKeys(cfg, KeyStoreFile); err != nil {
		t.Fatal(err)
	}
	if v, err := (secrets.FileStore{Dir: cfg.DataDir}).Get(appservice.HSTokenSecret("br")); err != nil || v != "hs-br" {
		t.Fatalf("hs_token after migrating to a file: %q %v", v, err)
	}
	if _, err := (secrets.KeyringStore{DataDir: cfg.DataDir}).Get(appservice.HSTokenSecret("br")); err != secrets.ErrNotFound {
		t.Fatalf("keyring still holds the hs_token after migrating to a file: %v", err)
	}
	if _, err := (secrets.KeyringStore{DataDir: cfg.DataDir}).Get(secrets.TLSCertName); err != secrets.ErrNotFound {
		t.Fatalf("keyring still holds the federation certificate after migrating to a file: %v", err)
	}
	if moved, created, err := secrets.LoadOrCreateTLSCert(secrets.FileStore{Dir: cfg.DataDir}, "keyring.local"); err != nil || created ||
		!bytes.Equal(moved.Certificate[0], cert.Certificate[0]) {
		t.Fatalf("federation certificate after migrating to a file: created %v, %v", created, err)
	}
	if _, err := (secrets.KeyringStore{DataDir: cfg.DataDir}).Get(secrets.SigningKeyName); err != secrets.ErrNotFound {
		t.Fatalf("keyring still holds the key after migrating to a file: %v", err)
	}
	st, _, _ = openSecrets(cfg)
	if k, _, err := secrets.LoadOrCreateSigningKey(st); err != nil || k.ID != key.ID {
		t.Fatalf("key after migrating to a file: %v", err)
	}
	if _, err := MigrateKeys(cfg, KeyStoreKeyring); err != nil {
		t.Fatal(err)
	}
	cfg.KeyStore = KeyStoreKeyring
	newID, err := RotateKeys(cfg)
	if err != nil {
		t.Fatal(err)
	}
	status, err := KeysStatus(cfg)
	if err != nil || status.KeyID != newID || len(status.OldKeys) != 1 || status.OldKeys[0] != key.ID ||
		!strings.Contains(status.Where, "OS keyring") {
		t.Fatalf("status after migrate back and rotate: %+v %v", status, err)
	}
}
