package room

import (
	"context"
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"testing"

	"github.com/hearth-chat/hearth/internal/store"
)

// TestOpenWiresTheNotifier: every commit through the store Open returns
// advances its notifier (after the caller's own OnCommit), and a reopened
// store's notifier starts at the position on disk, as the daemon needs
// for /sync and every stream follower.
func TestOpenWiresTheNotifier(t *testing.T) {
	ctx := context.Background()
	_, key, _ := ed25519.GenerateKey(nil)
	path := filepath.Join(t.TempDir(), "h.db")
	var seen []uint64
	opts := Options{Path: path, Engine: Config{ServerName: "test.local", KeyID: "ed25519:t", PrivateKey: key},
		Store: store.Options{OnCommit: func(p uint64) { seen = append(seen, p) }}}
	st, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Engine.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"}); err != nil {
		t.Fatal(err)
	}
	pos, _ := st.Notifier.Pos()
	if pos == 0 || len(seen) == 0 || seen[len(seen)-1] != pos {
		t.Fatalf("notifier at %d, OnCommit saw %v: want both at the commit's position", pos, seen)
	}
	if err := st.DB.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer again.DB.Close()
	if p, _ := again.Notifier.Pos(); p != pos {
		t.Fatalf("reopened notifier at %d, want %d", p, pos)
	}
}

// TestOpenStoreHook: the daemon's opener settles the engine's server name
// before the engine exists, and its error is Open's, unwrapped.
func TestOpenStoreHook(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	path := filepath.Join(t.TempDir(), "h.db")
	st, err := Open(Options{Engine: Config{KeyID: "ed25519:t", PrivateKey: key},
		OpenStore: func(o store.Options, c *Config) (*store.DB, error) {
			c.ServerName = "settled.local"
			return store.Open(path, o)
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.DB.Close()
	if got := st.Engine.ServerName(); got != "settled.local" {
		t.Fatalf("engine's server name %q, want the opener's", got)
	}
	refused := errors.New("refused")
	if _, err := Open(Options{OpenStore: func(store.Options, *Config) (*store.DB, error) { return nil, refused }}); err != refused {
		t.Fatalf("Open = %v, want the opener's error", err)
	}
}
