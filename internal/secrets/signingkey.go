package secrets

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SigningKey is the server's ed25519 identity (Server-Server API §"Server
// keys"): it signs every event this server creates. Old keys are kept
// after a rotation so other servers can still verify what they signed
// (old_verify_keys).
type SigningKey struct {
	ID  string // "ed25519:<version>"
	Key ed25519.PrivateKey
	Old []OldSigningKey
}

// OldSigningKey is a retired key and when it stopped being used.
type OldSigningKey struct {
	ID        string
	Public    ed25519.PublicKey
	ExpiredTS int64 // milliseconds
}

// SigningKeyName is the secret holding the keys, in the format Synapse
// and Dendrite read ("ed25519 <version> <unpadded base64 seed>" per line),
// so a key can move between servers. Lines after the first are retired
// keys and end with the time they expired, in milliseconds.
const SigningKeyName = "signing.key"

func newKey() (string, ed25519.PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", nil, fmt.Errorf("generate signing key: %w", err)
	}
	// The version only has to be unique per server; the key's first bytes are.
	version := strings.NewReplacer("-", "a", "_", "b").Replace(base64.RawURLEncoding.EncodeToString(pub[:4]))
	return "ed25519:" + version, priv, nil
}

func (k *SigningKey) encode() string {
	var b strings.Builder
	line := func(id string, seed []byte, expired int64) {
		fmt.Fprintf(&b, "ed25519 %s %s", strings.TrimPrefix(id, "ed25519:"), base64.RawStdEncoding.EncodeToString(seed))
		if expired != 0 {
			fmt.Fprintf(&b, " %d", expired)
		}
		b.WriteByte('\n')
	}
	line(k.ID, k.Key.Seed(), 0)
	for _, o := range k.Old {
		// A retired key keeps only its public half: nothing signs with it again.
		fmt.Fprintf(&b, "ed25519 %s public:%s %d\n", strings.TrimPrefix(o.ID, "ed25519:"),
			base64.RawStdEncoding.EncodeToString(o.Public), o.ExpiredTS)
	}
	return b.String()
}

func decodeSigningKey(s string) (*SigningKey, error) {
	var k *SigningKey
	for n, line := range strings.Split(strings.TrimSpace(s), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "ed25519" {
			return nil, fmt.Errorf("line %d: expected \"ed25519 <version> <seed>\"", n+1)
		}
		id := "ed25519:" + f[1]
		if n == 0 {
			seed, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(f[2], "="))
			if err != nil || len(seed) != ed25519.SeedSize {
				return nil, fmt.Errorf("line 1: bad key seed")
			}
			k = &SigningKey{ID: id, Key: ed25519.NewKeyFromSeed(seed)}
			continue
		}
		if len(f) != 4 || !strings.HasPrefix(f[2], "public:") {
			return nil, fmt.Errorf("line %d: expected \"ed25519 <version> public:<key> <expired ms>\"", n+1)
		}
		pub, err := base64.RawStdEncoding.DecodeString(strings.TrimPrefix(f[2], "public:"))
		ts, terr := strconv.ParseInt(f[3], 10, 64)
		if err != nil || terr != nil || len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("line %d: bad retired key", n+1)
		}
		k.Old = append(k.Old, OldSigningKey{ID: id, Public: pub, ExpiredTS: ts})
	}
	return k, nil
}

// LoadOrCreateSigningKey reads the key from the store, making one on first
// start; created reports that it did.
func LoadOrCreateSigningKey(store Store) (key *SigningKey, created bool, err error) {
	s, err := store.Get(SigningKeyName)
	if errors.Is(err, ErrNotFound) {
		id, priv, err := newKey()
		if err != nil {
			return nil, false, err
		}
		key = &SigningKey{ID: id, Key: priv}
		if err := store.Set(SigningKeyName, key.encode()); err != nil {
			return nil, false, fmt.Errorf("store signing key in %s: %w", store.Where(), err)
		}
		return key, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read signing key from %s: %w", store.Where(), err)
	}
	key, err = decodeSigningKey(s)
	if err != nil {
		return nil, false, fmt.Errorf("signing key in %s: %w", store.Where(), err)
	}
	return key, false, nil
}

// ReadSigningKey reads the key without making one: ErrNotFound when there
// is none yet.
func ReadSigningKey(store Store) (*SigningKey, error) {
	s, err := store.Get(SigningKeyName)
	if err != nil {
		return nil, err
	}
	return decodeSigningKey(s)
}

// RotateSigningKey makes a new signing key, keeps the current one as a
// retired key expired at now (making one first if there is none), and
// stores both.
func RotateSigningKey(store Store, now time.Time) (*SigningKey, error) {
	key, _, err := LoadOrCreateSigningKey(store)
	if err != nil {
		return nil, err
	}
	if err := key.rotate(now); err != nil {
		return nil, err
	}
	if err := store.Set(SigningKeyName, key.encode()); err != nil {
		return nil, err
	}
	return key, nil
}

// rotate makes a new signing key and retires the current one.
func (k *SigningKey) rotate(now time.Time) error {
	id, priv, err := newKey()
	if err != nil {
		return err
	}
	k.Old = append(k.Old, OldSigningKey{ID: k.ID, Public: k.Key.Public().(ed25519.PublicKey), ExpiredTS: now.UnixMilli()})
	k.ID, k.Key = id, priv
	return nil
}
