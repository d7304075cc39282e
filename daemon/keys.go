package daemon

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// SigningKey is the server's ed25519 identity (Server-Server API §"Server
// keys"): it signs every event this server creates.
type SigningKey struct {
	ID  string // "ed25519:<version>"
	Key ed25519.PrivateKey
}

// signingKeyFile is where the key lives until the OS keyring holds it
// (the desktop issue moves it there). The file is 0600 and holds one line:
// "ed25519 <version> <unpadded base64 seed>", the format Synapse and
// Dendrite also read, so a key can be moved between servers.
const signingKeyFile = "signing.key"

// loadOrCreateSigningKey reads the key, making one on first start.
func loadOrCreateSigningKey(dataDir string) (*SigningKey, bool, error) {
	path := filepath.Join(dataDir, signingKeyFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, false, fmt.Errorf("generate signing key: %w", err)
		}
		version := base64.RawURLEncoding.EncodeToString(priv.Public().(ed25519.PublicKey)[:4])
		version = strings.NewReplacer("-", "a", "_", "b").Replace(version)
		line := fmt.Sprintf("ed25519 %s %s\n", version, base64.RawStdEncoding.EncodeToString(priv.Seed()))
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, false, fmt.Errorf("create data dir: %w", err)
		}
		if err := os.WriteFile(path, []byte(line), 0o600); err != nil {
			return nil, false, fmt.Errorf("write signing key: %w", err)
		}
		return &SigningKey{ID: "ed25519:" + version, Key: priv}, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read signing key: %w", err)
	}
	parts := strings.Fields(string(b))
	if len(parts) != 3 || parts[0] != "ed25519" {
		return nil, false, fmt.Errorf("%s: expected \"ed25519 <version> <seed>\"", path)
	}
	seed, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(parts[2], "="))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, false, fmt.Errorf("%s: bad key seed", path)
	}
	return &SigningKey{ID: "ed25519:" + parts[1], Key: ed25519.NewKeyFromSeed(seed)}, false, nil
}
