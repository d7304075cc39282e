package e2ee

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

const (
	alice       = "@alice:test.local"
	aliceDevice = "ADEV"
)

func newService(t testing.TB) *Service {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "hearth.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return New(db, "test.local")
}

func signedKey(k string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"key":%q,"signatures":{%q:{"ed25519:ADEV":"sig"}}}`, k, alice))
}

// TestConcurrentClaims: many claimers at once get every one-time key
// exactly once, then the fallback key.
func TestConcurrentClaims(t *testing.T) {
	s := newService(t)
	const keys, claimers = 40, 64
	up := &Upload{FallbackKeys: []Key{{Algorithm: "signed_curve25519", ID: "FB", JSON: signedKey("fb")}}}
	for i := range keys {
		up.OneTimeKeys = append(up.OneTimeKeys, Key{Algorithm: "signed_curve25519", ID: fmt.Sprintf("K%03d", i), JSON: signedKey(fmt.Sprint(i))})
	}
	if _, err := s.Store(context.Background(), alice, aliceDevice, up); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for range claimers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, _, err := s.Claim(context.Background(), map[string]map[string]string{alice: {aliceDevice: "signed_curve25519"}})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for k := range res[alice][aliceDevice] {
				got[k]++
			}
		}()
	}
	wg.Wait()
	for k, n := range got {
		if k != "signed_curve25519:FB" && n != 1 {
			t.Errorf("one-time key %s handed out %d times", k, n)
		}
	}
	if len(got) != keys+1 || got["signed_curve25519:FB"] != claimers-keys {
		t.Fatalf("got %d distinct keys and the fallback %d times, want %d and %d", len(got), got["signed_curve25519:FB"], keys+1, claimers-keys)
	}
}

// TestClaimOldestFirst: one-time keys are claimed in upload order, not by
// key ID (MSC4225; Complement TestKeyClaimOrdering); uploading a key again
// keeps its place. (Keys stored before upload order was recorded are the
// oldest: store's TestOneTimeKeysOrderedOnUpgrade.)
func TestClaimOldestFirst(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	const alg = "signed_curve25519"
	upload := func(id string) {
		t.Helper()
		if _, err := s.Store(ctx, alice, aliceDevice, &Upload{OneTimeKeys: []Key{{Algorithm: alg, ID: id, JSON: signedKey(id)}}}); err != nil {
			t.Fatal(err)
		}
	}
	upload("B")
	upload("A")
	upload("B") // again: still older than A
	upload("Z")
	var order []string
	for range 4 {
		res, _, err := s.Claim(ctx, map[string]map[string]string{alice: {aliceDevice: alg}})
		if err != nil {
			t.Fatal(err)
		}
		for name, v := range res[alice][aliceDevice] {
			if string(v) != string(signedKey(name[len(alg)+1:])) {
				t.Errorf("claimed %s with value %s", name, v)
			}
			order = append(order, name[len(alg)+1:])
		}
	}
	if fmt.Sprint(order) != "[B A Z]" {
		t.Fatalf("claim order %v, want [B A Z] (oldest upload first)", order)
	}
}

// TestDecodeUploadMissingFields: device keys without algorithms, keys or
// signatures are M_BAD_JSON (Complement TestUploadKey "Rejects invalid
// device keys").
func TestDecodeUploadMissingFields(t *testing.T) {
	full := map[string]any{"user_id": alice, "device_id": aliceDevice, "algorithms": []string{"m.olm.v1.curve25519-aes-sha2"},
		"keys":       map[string]string{"curve25519:" + aliceDevice: "c", "ed25519:" + aliceDevice: "e"},
		"signatures": map[string]any{alice: map[string]string{"ed25519:" + aliceDevice: "sig"}}}
	for _, field := range []string{"algorithms", "keys", "signatures"} {
		dk := map[string]any{}
		for k, v := range full {
			if k != field {
				dk[k] = v
			}
		}
		body, _ := json.Marshal(map[string]any{"device_keys": dk})
		_, err := DecodeUpload(body, alice, aliceDevice)
		if me, ok := err.(*matrixerr.Error); !ok || me.Code != "M_BAD_JSON" {
			t.Errorf("device_keys without %s: %v, want M_BAD_JSON", field, err)
		}
	}
	body, _ := json.Marshal(map[string]any{"device_keys": full})
	if _, err := DecodeUpload(body, alice, aliceDevice); err != nil {
		t.Fatalf("complete device keys refused: %v", err)
	}
}

// TestBackupReplacement follows the spec's rules for a better session.
func TestBackupReplacement(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	v, err := s.CreateBackup(ctx, alice, "m.megolm_backup.v1.curve25519-aes-sha2", json.RawMessage(`{"public_key":"pk"}`))
	if err != nil {
		t.Fatal(err)
	}
	put := func(d SessionData) (int, string) {
		d.SessionData = json.RawMessage(`{"ciphertext":"c"}`)
		n, etag, err := s.PutBackupKeys(ctx, alice, v, BackupRooms{"!r:test.local": {"S": &d}})
		if err != nil {
			t.Fatal(err)
		}
		return n, etag
	}
	stored := func() SessionData {
		rooms, err := s.BackupKeys(alice, v, "!r:test.local", "S")
		if err != nil {
			t.Fatal(err)
		}
		return *rooms["!r:test.local"]["S"]
	}
	_, e1 := put(SessionData{FirstMessageIndex: 5, ForwardedCount: 2})
	if _, e := put(SessionData{FirstMessageIndex: 6}); e != e1 || stored().FirstMessageIndex != 5 {
		t.Fatalf("a later first_message_index replaced the key (etag %s→%s)", e1, e)
	}
	put(SessionData{FirstMessageIndex: 5, ForwardedCount: 1})
	if d := stored(); d.ForwardedCount != 1 {
		t.Fatalf("lower forwarded_count did not replace: %+v", d)
	}
	put(SessionData{FirstMessageIndex: 9, IsVerified: true})
	if d := stored(); !d.IsVerified {
		t.Fatalf("a verified key did not replace an unverified one: %+v", d)
	}
	if n, _ := put(SessionData{FirstMessageIndex: 0}); n != 1 || stored().FirstMessageIndex != 9 {
		t.Fatalf("an unverified key replaced a verified one, or count %d != 1", n)
	}
	// A newer version makes the old one refuse writes.
	v2, _ := s.CreateBackup(ctx, alice, "m.megolm_backup.v1.curve25519-aes-sha2", json.RawMessage(`{}`))
	_, _, err = s.PutBackupKeys(ctx, alice, v, BackupRooms{"!r:test.local": {"S": &SessionData{SessionData: json.RawMessage(`{}`)}}})
	if me, ok := err.(*matrixerr.Error); !ok || me.Code != "M_WRONG_ROOM_KEYS_VERSION" || me.Extra["current_version"] != v2 {
		t.Fatalf("write to an old version: %v", err)
	}
}

// FuzzDecodeUpload: any body either decodes into keys that all pass the
// checks, or is refused with a Matrix error; never a panic.
func FuzzDecodeUpload(f *testing.F) {
	f.Add([]byte(`{"device_keys":{"user_id":"@alice:test.local","device_id":"ADEV","algorithms":["m.olm.v1.curve25519-aes-sha2"],` +
		`"keys":{"curve25519:ADEV":"c","ed25519:ADEV":"e"},"signatures":{"@alice:test.local":{"ed25519:ADEV":"s"}}},` +
		`"one_time_keys":{"signed_curve25519:A":{"key":"k","signatures":{"@alice:test.local":{"ed25519:ADEV":"s"}}}},` +
		`"fallback_keys":{"signed_curve25519:F":{"key":"f","fallback":true,"signatures":{"x":{"y":"z"}}}}}`))
	f.Add([]byte(`{"one_time_keys":{"curve25519:A":"plain"}}`))
	f.Add([]byte(`{"device_keys":null}`))
	f.Add([]byte(`{"one_time_keys":{":":""}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		up, err := DecodeUpload(body, alice, aliceDevice)
		if err != nil {
			if _, ok := err.(*matrixerr.Error); !ok {
				t.Fatalf("non-Matrix error %T: %v", err, err)
			}
			return
		}
		if up.DeviceKeys != nil {
			var dk deviceKeys
			if json.Unmarshal(up.DeviceKeys, &dk) != nil || dk.UserID != alice || dk.DeviceID != aliceDevice {
				t.Fatalf("accepted device keys of the wrong shape or owner: %s", up.DeviceKeys)
			}
		}
		for _, k := range append(up.OneTimeKeys, up.FallbackKeys...) {
			if validID("", k.Algorithm) != nil || validID("", k.ID) != nil || checkKeyValue(k.JSON) != nil {
				t.Fatalf("accepted a bad key %+v", k)
			}
		}
	})
}
