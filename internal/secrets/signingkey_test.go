package secrets

import (
	"strings"
	"testing"
	"time"
)

func TestSigningKeyRoundTripAndRotate(t *testing.T) {
	store := FileStore{t.TempDir()}
	key, created, err := LoadOrCreateSigningKey(store)
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	again, created, err := LoadOrCreateSigningKey(store)
	if err != nil || created || again.ID != key.ID || !again.Key.Equal(key.Key) {
		t.Fatalf("reload gave another key: %v %v", created, err)
	}
	oldID := key.ID
	if err := key.rotate(time.UnixMilli(1700000000000)); err != nil {
		t.Fatal(err)
	}
	if err := store.Set(SigningKeyName, key.encode()); err != nil {
		t.Fatal(err)
	}
	back, _, err := LoadOrCreateSigningKey(store)
	if err != nil {
		t.Fatal(err)
	}
	if back.ID == oldID || len(back.Old) != 1 || back.Old[0].ID != oldID || back.Old[0].ExpiredTS != 1700000000000 ||
		!back.Old[0].Public.Equal(again.Key.Public()) {
		t.Fatalf("after rotate: %+v", back)
	}
	// A retired key keeps only its public half.
	s, _ := store.Get(SigningKeyName)
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
