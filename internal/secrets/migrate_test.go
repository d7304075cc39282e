package secrets

import (
	"errors"
	"testing"
)

// TestMigrateMovesWhatGoesWithTheKey: the signing key and the named extras
// move, an absent certificate or extra is skipped, the source ends empty,
// and a store without a signing key is not migrated.
func TestMigrateMovesWhatGoesWithTheKey(t *testing.T) {
	from, to := FileStore{t.TempDir()}, FileStore{t.TempDir()}
	if err := Migrate(from, to); err == nil {
		t.Fatal("migrated a store without a signing key")
	}
	key, _, err := LoadOrCreateSigningKey(from)
	if err != nil {
		t.Fatal(err)
	}
	from.Set("hs-token", "secret")
	if err := Migrate(from, to, "hs-token", "absent"); err != nil {
		t.Fatal(err)
	}
	if moved, err := ReadSigningKey(to); err != nil || moved.ID != key.ID {
		t.Fatalf("key after the move: %v", err)
	}
	if v, err := to.Get("hs-token"); err != nil || v != "secret" {
		t.Fatalf("extra after the move: %q %v", v, err)
	}
	for _, name := range []string{SigningKeyName, "hs-token"} {
		if _, err := from.Get(name); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s left in the source: %v", name, err)
		}
	}
	if _, err := to.Get(TLSCertName); !errors.Is(err, ErrNotFound) {
		t.Errorf("a certificate appeared: %v", err)
	}
}
