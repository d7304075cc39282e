package agent

import (
	"context"
	"encoding/json"
	"slices"

	"github.com/hearth-chat/hearth/internal/room"
)

// Crypto is the end-to-end encryption device a party speaks as
// (Client-Server API §"End-to-end encryption"): in an encrypted room
// every m.call.* event is an m.room.encrypted event, which only a device
// the caller's client shared its Megolm session with can read, so the
// agent's parties are such devices. crypto_goolm.go has the one Hearth
// builds with (mautrix-go's OlmMachine on pure-Go Olm); a build without
// the goolm tag has none, and the agent then stays out of encrypted rooms.
type Crypto interface {
	// Run feeds the device what a client's /sync would (its to-device
	// messages, its users' device-list changes, its one-time key count)
	// until ctx ends.
	Run(ctx context.Context)
	// Decrypt decrypts an m.room.encrypted event, waiting a moment for
	// its room key if that has not arrived yet; it returns the event's
	// type and content.
	Decrypt(ctx context.Context, roomID string, ev *room.ClientEvent) (string, json.RawMessage, error)
	// Encrypt encrypts an event for the devices of the room's members,
	// sharing the session with them first; it returns the content of the
	// m.room.encrypted event to send.
	Encrypt(ctx context.Context, roomID, typ string, content json.RawMessage) (json.RawMessage, error)
	// EncryptFile encrypts an attachment (AES-CTR, Client-Server API
	// §"Sending encrypted attachments"); file gives the content's `file`
	// object once the ciphertext is uploaded at mxc.
	EncryptFile(data []byte) (ciphertext []byte, file func(mxc string) any)
}

// evEncrypted is the type of every event of an encrypted room.
const evEncrypted = "m.room.encrypted"

// maxEncryptedQueue bounds the encrypted events waiting for decryption;
// past it they are dropped (a flood in a room the agent is in).
const maxEncryptedQueue = 256

// encrypted queues an m.room.encrypted event for decryption when it is in
// a room where the agent would act on a call event: a room echo is in, or
// a 1:1 room of the owner (for voicemail). Decryption may wait for the
// room key, so it runs on its own goroutine, in order, and the follower
// goes on.
func (a *Agent) encrypted(pe *room.PushEvent) {
	ev := &pe.Event
	in := func(user string) bool {
		return user != "" && (ev.Sender == user || slices.ContainsFunc(pe.Local, func(m room.PushMember) bool { return m.UserID == user }))
	}
	var p Party
	switch {
	case a.cfg.Echo.Crypto != nil && in(a.cfg.Echo.UserID):
		p = a.cfg.Echo
	case a.cfg.Owner.Crypto != nil && a.vm != nil && pe.Members == 2 && in(a.cfg.Owner.UserID):
		p = a.cfg.Owner
	default:
		return
	}
	var c struct {
		DeviceID string `json:"device_id"`
	}
	json.Unmarshal(ev.Content, &c)
	if ev.Sender == p.UserID && (p.UserID == a.cfg.Echo.UserID || c.DeviceID == p.DeviceID) {
		return // the agent's own event
	}
	select {
	case a.decrypt <- encryptedEvent{pe: pe, party: p}:
	default:
		// Said once per flood: the decryptor clears the flag once the
		// queue is empty again.
		if a.dropping.CompareAndSwap(false, true) {
			a.log.Warn("calls: too many encrypted events to decrypt, dropping", "room", pe.RoomID)
		}
	}
}

type encryptedEvent struct {
	pe    *room.PushEvent
	party Party
}

// decryptor decrypts the queued events in order and handles the call
// events among them as if they had come in the clear.
func (a *Agent) decryptor(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-a.decrypt:
			if len(a.decrypt) == 0 {
				a.dropping.Store(false)
			}
			typ, content, err := e.party.Crypto.Decrypt(ctx, e.pe.RoomID, &e.pe.Event)
			if err != nil {
				a.log.Debug("calls: cannot decrypt", "room", e.pe.RoomID, "event", e.pe.Event.EventID, "err", err)
				continue
			}
			if !isCallEvent(typ) {
				continue
			}
			pe := *e.pe
			pe.Event.Type, pe.Event.Content = typ, content
			a.handle(&pe)
		}
	}
}

// encryptedRoom says whether events the agent sends to roomID as party p
// are encrypted: the room has m.room.encryption and p is an E2EE device.
func (a *Agent) encryptedRoom(p Party, roomID string) bool {
	return p.Crypto != nil && a.cfg.Encrypted != nil && a.cfg.Encrypted(roomID)
}

// sendAs sends an event to a room as party p, encrypted in an encrypted
// room.
func (a *Agent) sendAs(ctx context.Context, p Party, roomID, typ string, content json.RawMessage, txn string) (string, error) {
	if a.encryptedRoom(p, roomID) {
		enc, err := p.Crypto.Encrypt(ctx, roomID, typ, content)
		if err != nil {
			return "", err
		}
		typ, content = evEncrypted, enc
	}
	return a.rooms.Send(ctx, room.SendRequest{Sender: p.UserID, Device: p.DeviceID, RoomID: roomID,
		Type: typ, Content: content, TxnID: txn})
}
