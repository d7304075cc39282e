package daemon

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-chat/hearth/internal/secrets"
	"github.com/hearth-chat/hearth/internal/store"
)

// TestUpgradeRecordsOldDefaultName: a data dir made before the server name
// was recorded, on a machine whose name is not a valid server name
// ("my_box"), holds users and events under the name Hearth then used
// ("my_box", the bare lower-cased machine name), not under the cleaned-up
// default a new data dir gets ("my-box-<key hash>.local"). Its first start after the
// upgrade records and serves the name its data carries; a new data dir
// on the same machine gets the cleaned-up one.
func TestUpgradeRecordsOldDefaultName(t *testing.T) {
	const host = "My_Box.lan"
	open := func(t *testing.T, dir string, withUser bool) (*Config, string) {
		t.Helper()
		path := filepath.Join(dir, dbFile)
		if withUser { // a file written by a Hearth that did not record the name
			db, err := store.Open(path, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(context.Background(), func(tx *store.Tx) error {
				return tx.Put(store.Users, []byte("alice"), []byte(`{}`))
			}); err != nil {
				t.Fatal(err)
			}
			db.Close()
		}
		cfg := &Config{DataDir: dir, ServerName: machineServerName(host), serverNameDefault: true,
			serverNameLegacy: legacyMachineName(host)}
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		// The upgraded dir already had its key; a new one's is made now.
		db, err := openStore(cfg, store.Options{}, &secrets.SigningKey{ID: "ed25519:a", Key: priv}, !withUser)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		recorded, err := db.ServerName()
		if err != nil {
			t.Fatal(err)
		}
		return cfg, recorded
	}
	if cfg, recorded := open(t, t.TempDir(), true); cfg.ServerName != "my_box" || recorded != "my_box" {
		t.Errorf("upgraded data dir: serving %q, recorded %q; want the name its data carries, my_box", cfg.ServerName, recorded)
	}
	if cfg, recorded := open(t, t.TempDir(), false); !strings.HasPrefix(cfg.ServerName, "my-box-") ||
		!strings.HasSuffix(cfg.ServerName, ".local") || recorded != cfg.ServerName {
		t.Errorf("new data dir: serving %q, recorded %q; want my-box-<key hash>.local", cfg.ServerName, recorded)
	}
}
