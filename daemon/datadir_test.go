package daemon

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/hearth-chat/hearth/internal/store"
)

// TestLegacyDefaultNameRecorded: a data dir written by a Hearth that used
// the machine's name unchecked ("my_box") and never recorded it keeps
// that name when no name is configured, instead of taking today's
// corrected default ("my-box") that none of its user IDs carry; a new
// data dir takes the corrected default.
func TestLegacyDefaultNameRecorded(t *testing.T) {
	cfg := func(dir string) Config {
		return Config{DataDir: dir, ServerName: machineServerName("my_box"), serverNameDefault: true,
			legacyServerName: legacyMachineServerName("my_box")}
	}

	old := t.TempDir()
	db, err := store.Open(filepath.Join(old, dbFile), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(context.Background(), func(tx *store.Tx) error {
		return tx.Put(store.Users, []byte("alice"), []byte(`{}`))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	c := cfg(old)
	db, err = openStore(&c, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	recorded, _ := db.ServerName()
	db.Close()
	if c.ServerName != "my_box" || recorded != "my_box" {
		t.Fatalf("old data dir: serving %q, recorded %q; want my_box (the name its data carries)", c.ServerName, recorded)
	}

	c = cfg(t.TempDir())
	db, err = openStore(&c, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	recorded, _ = db.ServerName()
	db.Close()
	if c.ServerName != "my-box" || recorded != "my-box" {
		t.Fatalf("new data dir: serving %q, recorded %q; want my-box", c.ServerName, recorded)
	}
}
