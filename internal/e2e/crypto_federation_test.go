//go:build goolm

package e2e

import (
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// TestEncryptedMessagesAcrossServers: alice on hs1.test and bob on
// hs2.test, each a mautrix-go client with its own Olm machine, share a
// Megolm-encrypted room over real TLS federation. alice's client queries
// bob's device keys and claims his one-time key through hs1 (which asks
// hs2), sends the room key as an Olm to-device message (an
// m.direct_to_device EDU from hs1 to hs2) and the encrypted message; bob
// decrypts it on hs2, and alice decrypts his reply on hs1. Then bob signs
// in on a second device: hs2 announces it (m.device_list_update) and
// alice's /sync on hs1 lists bob in device_lists.changed.
func TestEncryptedMessagesAcrossServers(t *testing.T) {
	t.Parallel()
	net := startFedNet(t, "hs1.test", "hs2.test")
	hs1, hs2 := net.Daemons["hs1.test"], net.Daemons["hs2.test"]
	ac, bc := hs1.Register("alice"), hs2.Register("bob")

	room := CreateRoom(t, ac, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomAliasName: "secrets",
		InitialState: []*event.Event{{Type: event.StateEncryption, Content: event.Content{
			Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}}}}})
	joined, err := bc.JoinRoom(ctx(t), "#secrets:hs1.test", nil)
	noErr(t, err, "bob@hs2 joins #secrets:hs1.test")
	if joined.RoomID != room {
		t.Fatalf("join by alias gave %s, want %s", joined.RoomID, room)
	}
	SyncUntil(t, ac, "", "", "bob's join on hs1", func(r *mautrix.RespSync) bool {
		for _, ev := range r.Rooms.Join[room].Timeline.Events {
			if ev.Type == event.StateMember && ev.GetStateKey() == bc.UserID.String() {
				return true
			}
		}
		return false
	})

	state := &roomState{room: room}
	alice, bob := newCryptoUser(t, ac, state), newCryptoUser(t, bc, state)
	members := []id.UserID{ac.UserID, bc.UserID}

	// Before anything is shared: hs1 answers for bob's keys by asking hs2.
	q, err := ac.QueryKeys(ctx(t), &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{bc.UserID: {}}})
	noErr(t, err, "alice queries bob's keys")
	if q.DeviceKeys[bc.UserID][bc.DeviceID].DeviceID != bc.DeviceID || len(q.Failures) != 0 {
		t.Fatalf("bob's device keys through hs1: %+v, failures %v", q.DeviceKeys[bc.UserID], q.Failures)
	}

	const text = "the owl crosses the border at midnight"
	ev := alice.send(t, room, members, text)
	if got := bob.receive(t, room, ev); got != text {
		t.Fatalf("bob decrypted %q, want %q", got, text)
	}
	const reply = "understood, from the other side"
	ev = bob.send(t, room, members, reply)
	if got := alice.receive(t, room, ev); got != reply {
		t.Fatalf("alice decrypted %q, want %q", got, reply)
	}

	// A new device of bob's reaches alice's device list news on hs1.
	since := Quiesce(t, ac, alice.since)
	b2 := hs2.Login("bob")
	newCryptoUser(t, b2, state) // uploads the new device's keys
	SyncUntil(t, ac, since, "", "bob in device_lists.changed on hs1", func(r *mautrix.RespSync) bool {
		return slices.Contains(r.DeviceLists.Changed, bc.UserID)
	})
	q, err = ac.QueryKeys(ctx(t), &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{bc.UserID: {}}})
	noErr(t, err, "alice queries bob's keys again")
	if q.DeviceKeys[bc.UserID][b2.DeviceID].DeviceID != b2.DeviceID {
		t.Fatalf("bob's new device is not in hs1's answer: %v", q.DeviceKeys[bc.UserID])
	}

	// alice verifies bob: both publish cross-signing keys, alice signs
	// bob's master key (served by hs2) with her user-signing key, and hs1
	// keeps that signature for her and adds it to bob's key from hs2.
	noUIA := func(*mautrix.RespUserInteractive) any {
		t.Error("first cross-signing upload asked for UIA")
		return nil
	}
	aliceKeys, err := alice.mach.GenerateCrossSigningKeys()
	noErr(t, err, "generate alice's cross-signing keys")
	noErr(t, alice.mach.PublishCrossSigningKeys(ctx(t), aliceKeys, noUIA), "publish alice's cross-signing keys")
	bobKeys, err := bob.mach.GenerateCrossSigningKeys()
	noErr(t, err, "generate bob's cross-signing keys")
	noErr(t, bob.mach.PublishCrossSigningKeys(ctx(t), bobKeys, noUIA), "publish bob's cross-signing keys")
	_, err = alice.mach.FetchKeys(ctx(t), []id.UserID{bc.UserID}, true)
	noErr(t, err, "alice fetches bob's keys")
	noErr(t, alice.mach.SignUser(ctx(t), bc.UserID, bobKeys.MasterKey.PublicKey()), "alice signs bob's master key")
	q, err = ac.QueryKeys(ctx(t), &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{bc.UserID: {}}})
	noErr(t, err, "alice queries bob's keys after verifying him")
	uskID := id.NewKeyID(id.KeyAlgorithmEd25519, aliceKeys.UserSigningKey.PublicKey().String())
	if q.MasterKeys[bc.UserID].Signatures[ac.UserID][uskID] == "" {
		t.Fatalf("bob's master key on hs1 lacks alice's signature: %+v", q.MasterKeys[bc.UserID])
	}
}
