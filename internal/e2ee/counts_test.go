package e2ee

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
)

// TestCountsOf: the counts of the wanted users' devices with device keys,
// as /sync's Counts reports each; other users and devices with only
// one-time keys are left out.
func TestCountsOf(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	const ghost = "@br_ghost:test.local"
	up := func(user, dev string, withKeys bool, otks ...string) {
		t.Helper()
		u := &Upload{FallbackKeys: []Key{{Algorithm: "signed_curve25519", ID: "FB" + dev, JSON: signedKey("fb" + dev)}}}
		if withKeys {
			u.DeviceKeys = json.RawMessage(`{"user_id":"` + user + `","device_id":"` + dev + `"}`)
		}
		for _, k := range otks {
			u.OneTimeKeys = append(u.OneTimeKeys, Key{Algorithm: "signed_curve25519", ID: k, JSON: signedKey(k)})
		}
		if _, err := s.Store(ctx, user, dev, u); err != nil {
			t.Fatal(err)
		}
	}
	up(ghost, "G1", true, "a", "b", "c")
	up(ghost, "G2", false, "a") // no device keys: not running encryption
	up(alice, aliceDevice, true, "a")
	if _, _, err := s.Claim(ctx, map[string]map[string]string{ghost: {"G1": "signed_curve25519"}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.CountsOf(func(u string) bool { return u == ghost })
	if err != nil {
		t.Fatal(err)
	}
	counts, fb, _ := s.Counts(ghost, "G1")
	want := map[string]map[string]DeviceCounts{ghost: {"G1": {OneTimeKeys: counts, UnusedFallback: fb}}}
	if !reflect.DeepEqual(got, want) || counts["signed_curve25519"] != 2 {
		t.Fatalf("CountsOf = %+v, want %+v", got, want)
	}
}

// TestCountsFollowWrites: counts kept in memory between reads are dropped
// by every write that moves them: an upload, a claim (of a one-time key,
// then of the fallback key), the device's deletion. Without keysWritten
// in any one of them the count after it is the one before.
func TestCountsFollowWrites(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	check := func(step string, otk int, fallback int) {
		t.Helper()
		for range 2 { // the second from memory
			counts, fb, err := s.Counts(alice, aliceDevice)
			if err != nil {
				t.Fatal(err)
			}
			if counts["signed_curve25519"] != otk || len(fb) != fallback {
				t.Fatalf("%s: counts %v, fallback %v; want %d and %d", step, counts, fb, otk, fallback)
			}
		}
	}
	claim := func() {
		t.Helper()
		if _, _, err := s.Claim(ctx, map[string]map[string]string{alice: {aliceDevice: "signed_curve25519"}}); err != nil {
			t.Fatal(err)
		}
	}
	check("none uploaded", 0, 0)
	if _, err := s.Store(ctx, alice, aliceDevice, &Upload{
		OneTimeKeys:  []Key{{Algorithm: "signed_curve25519", ID: "k1", JSON: signedKey("k1")}},
		FallbackKeys: []Key{{Algorithm: "signed_curve25519", ID: "fb", JSON: signedKey("fb")}}}); err != nil {
		t.Fatal(err)
	}
	check("after an upload", 1, 1)
	claim()
	check("after a claim", 0, 1)
	claim()
	check("after the fallback key's claim", 0, 0)
	if _, err := s.Store(ctx, alice, aliceDevice, &Upload{
		OneTimeKeys: []Key{{Algorithm: "signed_curve25519", ID: "k2", JSON: signedKey("k2")}}}); err != nil {
		t.Fatal(err)
	}
	check("after a second upload", 1, 0)
	if err := s.DeleteDevices(ctx, alice, []string{aliceDevice}); err != nil {
		t.Fatal(err)
	}
	check("after the device's deletion", 0, 0)
}
