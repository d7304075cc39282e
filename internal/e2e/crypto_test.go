//go:build goolm

// This file needs the goolm tag: without it mautrix's crypto package links
// libolm through cgo, which is not installed. `make test` passes the tag.

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// roomState is the StateStore mautrix's OlmMachine asks about rooms: here
// one encrypted room both users share.
type roomState struct {
	room id.RoomID
}

func (s *roomState) IsEncrypted(_ context.Context, r id.RoomID) (bool, error) {
	return r == s.room, nil
}

func (s *roomState) GetEncryptionEvent(_ context.Context, r id.RoomID) (*event.EncryptionEventContent, error) {
	if r != s.room {
		return nil, nil
	}
	return &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}, nil
}

func (s *roomState) FindSharedRooms(context.Context, id.UserID) ([]id.RoomID, error) {
	return []id.RoomID{s.room}, nil
}

// cryptoUser is a mautrix client with its own Olm machine and in-memory
// crypto store, as an E2EE client runs it.
type cryptoUser struct {
	client *mautrix.Client
	mach   *crypto.OlmMachine
	since  string
	// held are a room's events waiting for their room key, oldest first
	// (see timeline).
	held map[id.RoomID][]*event.Event
}

func newCryptoUser(t *testing.T, c *mautrix.Client, state *roomState) *cryptoUser {
	t.Helper()
	mach := crypto.NewOlmMachine(c, nil, crypto.NewMemoryStore(nil), state)
	noErr(t, mach.Load(ctx(t)), "load olm machine of %s", c.UserID)
	// Uploads the device keys and a batch of signed one-time keys.
	noErr(t, mach.ShareKeys(ctx(t), -1), "upload keys of %s", c.UserID)
	u := &cryptoUser{client: c, mach: mach, held: map[id.RoomID][]*event.Event{}}
	u.sync(t, 0)
	return u
}

// sync runs one /sync and feeds it to the Olm machine (to-device events,
// device lists, one-time key counts), returning the response.
func (u *cryptoUser) sync(t *testing.T, timeout time.Duration) *mautrix.RespSync {
	t.Helper()
	resp, err := u.client.SyncRequest(ctx(t), int(timeout.Milliseconds()), u.since, "", false, event.PresenceOnline)
	noErr(t, err, "sync of %s", u.client.UserID)
	u.mach.ProcessSyncResponse(ctx(t), resp, u.since)
	u.since = resp.NextBatch
	return resp
}

// send encrypts text for the room's members with Megolm, sharing the
// session over Olm-encrypted to-device messages first, and sends it.
func (u *cryptoUser) send(t *testing.T, room id.RoomID, members []id.UserID, text string) id.EventID {
	t.Helper()
	noErr(t, u.mach.ShareGroupSession(ctx(t), room, members), "share group session of %s", u.client.UserID)
	content, err := u.mach.EncryptMegolmEvent(ctx(t), room, event.EventMessage,
		&event.MessageEventContent{MsgType: event.MsgText, Body: text})
	noErr(t, err, "encrypt as %s", u.client.UserID)
	resp, err := u.client.SendMessageEvent(ctx(t), room, event.EventEncrypted, content)
	noErr(t, err, "send encrypted as %s", u.client.UserID)
	return resp.EventID
}

// receive syncs until the encrypted event arrives and returns its
// decrypted body.
func (u *cryptoUser) receive(t *testing.T, room id.RoomID, eventID id.EventID) string {
	t.Helper()
	return u.receiveMessage(t, room, eventID).Body
}

// receiveMessage syncs until the encrypted event arrives and returns its
// decrypted content.
func (u *cryptoUser) receiveMessage(t *testing.T, room id.RoomID, eventID id.EventID) *event.MessageEventContent {
	t.Helper()
	deadline := time.Now().Add(waitDeadline)
	for time.Now().Before(deadline) {
		for _, e := range u.timeline(t, room, 2*time.Second) {
			if e.ID != eventID {
				continue
			}
			dec := e.decrypted
			if dec == nil {
				t.Fatalf("%s arrived unencrypted", eventID)
			}
			if err := dec.Content.ParseRaw(dec.Type); err != nil && dec.Content.Parsed == nil {
				t.Fatalf("parse decrypted event: %v", err)
			}
			return dec.Content.AsMessage()
		}
	}
	t.Fatalf("%s never received %s", u.client.UserID, eventID)
	return nil
}

// timelineEvent is an event of a room's timeline as the client got it and,
// when it was encrypted, decrypted.
type timelineEvent struct {
	*event.Event
	decrypted *event.Event
}

// timeline syncs once and returns the room's new timeline events in order,
// the encrypted ones decrypted. An event whose Megolm session has not
// arrived yet is held, with every event after it, until a later sync
// brings the key: over federation the room key's to-device message (an
// EDU) may come after the event (a PDU), and clients such as Element wait
// for the key the same way. A key that never comes fails the test.
func (u *cryptoUser) timeline(t *testing.T, room id.RoomID, timeout time.Duration) []timelineEvent {
	t.Helper()
	resp := u.sync(t, timeout)
	queue := u.held[room]
	if jr := resp.Rooms.Join[room]; jr != nil {
		for _, evt := range jr.Timeline.Events {
			evt.RoomID = room
			queue = append(queue, evt)
		}
	}
	var out []timelineEvent
	for i, evt := range queue {
		if evt.Type != event.EventEncrypted {
			out = append(out, timelineEvent{Event: evt})
			continue
		}
		if evt.Content.Parsed == nil { // a held event was parsed on its first pass
			noErr(t, evt.Content.ParseRaw(evt.Type), "parse encrypted event")
		}
		dec, err := u.mach.DecryptMegolmEvent(ctx(t), evt)
		if errors.Is(err, crypto.NoSessionFound) && time.Since(time.UnixMilli(evt.Timestamp)) < waitDeadline {
			u.held[room] = queue[i:]
			return out
		}
		noErr(t, err, "%s decrypting %s", u.client.UserID, evt.ID)
		out = append(out, timelineEvent{Event: evt, decrypted: dec})
	}
	u.held[room] = nil
	return out
}

// encryptedRoom starts a daemon where alice and bob, each with an Olm
// machine and keys uploaded, share a Megolm-encrypted room.
func encryptedRoom(t *testing.T) (*Daemon, id.RoomID, *cryptoUser, *cryptoUser) {
	t.Helper()
	d := StartDaemon(t)
	ac, bc := d.Register("alice"), d.Register("bob")
	room := must(ac.CreateRoom(ctx(t), &mautrix.ReqCreateRoom{
		Preset: "private_chat", Invite: []id.UserID{bc.UserID},
		InitialState: []*event.Event{{Type: event.StateEncryption, Content: event.Content{
			Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}}}},
	})).get(t).RoomID
	must(bc.JoinRoomByID(ctx(t), room)).get(t)
	state := &roomState{room: room}
	return d, room, newCryptoUser(t, ac, state), newCryptoUser(t, bc, state)
}

// TestEncryptedMessages: two mautrix-go clients with its crypto package
// (pure-Go Olm) upload keys, claim each other's one-time keys, exchange
// Megolm sessions over to-device messages and send encrypted messages
// both ways through a real Hearth; each decrypts what the other sent.
func TestEncryptedMessages(t *testing.T) {
	_, room, alice, bob := encryptedRoom(t)
	ac, bc := alice.client, bob.client
	members := []id.UserID{ac.UserID, bc.UserID}

	for i := range 2 {
		text := fmt.Sprintf("the owl flies at midnight %d", i)
		ev := alice.send(t, room, members, text)
		if got := bob.receive(t, room, ev); got != text {
			t.Fatalf("bob decrypted %q, want %q", got, text)
		}
		reply := fmt.Sprintf("understood %d", i)
		ev = bob.send(t, room, members, reply)
		if got := alice.receive(t, room, ev); got != reply {
			t.Fatalf("alice decrypted %q, want %q", got, reply)
		}
	}
}

// TestCrossSigningTrust: alice publishes cross-signing keys generated by
// mautrix (no UIA the first time), signs her second device with her
// self-signing key, and bob's client, verifying every signature itself,
// then sees that device as cross-signed. Replacing the keys needs the
// password through UIA.
func TestCrossSigningTrust(t *testing.T) {
	d := StartDaemon(t)
	a1c, bc := d.Register("alice"), d.Register("bob")
	a2c := d.Login("alice")
	state := &roomState{}
	a1, a2, bob := newCryptoUser(t, a1c, state), newCryptoUser(t, a2c, state), newCryptoUser(t, bc, state)
	alice := a1c.UserID

	keys, err := a1.mach.GenerateCrossSigningKeys()
	noErr(t, err, "generate cross-signing keys")
	noUIA := func(*mautrix.RespUserInteractive) any {
		t.Error("first cross-signing upload asked for UIA")
		return nil
	}
	noErr(t, a1.mach.PublishCrossSigningKeys(ctx(t), keys, noUIA), "publish cross-signing keys")

	bobsView := func() id.TrustState {
		t.Helper()
		devs, err := bob.mach.FetchKeys(ctx(t), []id.UserID{alice}, true)
		noErr(t, err, "bob fetching alice's keys")
		dev := devs[alice][a2c.DeviceID]
		if dev == nil {
			dev, err = bob.mach.CryptoStore.GetDevice(ctx(t), alice, a2c.DeviceID)
			noErr(t, err, "bob's stored copy of alice's second device")
		}
		if dev == nil {
			t.Fatalf("bob does not know alice's second device")
		}
		trust, err := bob.mach.ResolveTrustContext(ctx(t), dev)
		noErr(t, err, "resolve trust")
		return trust
	}
	if trust := bobsView(); trust != id.TrustStateUnset {
		t.Fatalf("alice's second device is %s before she signed it", trust)
	}
	devs, err := a1.mach.FetchKeys(ctx(t), []id.UserID{alice}, true)
	noErr(t, err, "alice fetching her own devices")
	second := devs[alice][a2c.DeviceID]
	if second == nil {
		t.Fatalf("alice's first device does not see her second device: %v", devs[alice])
	}
	noErr(t, a1.mach.SignOwnDevice(ctx(t), second), "sign the second device")
	if trust := bobsView(); trust == id.TrustStateUnset {
		t.Fatal("bob does not see alice's second device as cross-signed after she signed it")
	}

	// New keys replace the old ones only through UIA with the password.
	keys2, err := a2.mach.GenerateCrossSigningKeys()
	noErr(t, err, "generate new cross-signing keys")
	asked := false
	withPassword := func(r *mautrix.RespUserInteractive) any {
		asked = true
		return map[string]any{"type": "m.login.password", "session": r.Session, "password": Password("alice"),
			"identifier": map[string]any{"type": "m.id.user", "user": string(alice)}}
	}
	noErr(t, a2.mach.PublishCrossSigningKeys(ctx(t), keys2, withPassword), "replace cross-signing keys")
	if !asked {
		t.Fatal("replacing cross-signing keys did not ask for UIA")
	}
	resp, err := bc.QueryKeys(ctx(t), &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{alice: {}}})
	noErr(t, err, "query alice's keys")
	if got := resp.MasterKeys[alice].Keys[id.NewKeyID(id.KeyAlgorithmEd25519, keys2.MasterKey.PublicKey().String())]; got != keys2.MasterKey.PublicKey() {
		t.Fatalf("master key after replacement: %v", resp.MasterKeys[alice])
	}
}

// encryptCopy encrypts a copy of plain with file's key (the caller keeps
// plain to compare with).
func encryptCopy(file *attachment.EncryptedFile, plain []byte) []byte {
	out := bytes.Clone(plain)
	file.EncryptInPlace(out)
	return out
}

// decryptCopy decrypts a copy of cipher as a client decrypts an
// attachment it downloaded: the hash checked first.
func decryptCopy(file *event.EncryptedFileInfo, cipher []byte) ([]byte, error) {
	if err := file.PrepareForDecryption(); err != nil {
		return nil, err
	}
	out := bytes.Clone(cipher)
	return out, file.DecryptInPlace(out)
}
