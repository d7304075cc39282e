//go:build goolm

// mautrix-go's crypto package on its pure-Go Olm (the goolm tag; without
// it the package links libolm through cgo). Hearth's builds pass the tag
// (Makefile, cmd/hearth-dist); crypto_none.go is the build without it.

package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/hearth-chat/hearth/internal/room"
)

// E2EE says whether this build's parties can be E2EE devices.
const E2EE = true

// Device is an E2EE device of the agent: mautrix-go's OlmMachine with an
// in-memory crypto store. Its keys live as long as the process, so the
// daemon makes a new device at each start (daemon/calls.go).
type Device struct {
	cfg    DeviceConfig
	client *mautrix.Client
	mach   *crypto.OlmMachine
	log    *slog.Logger
	// sendMu makes the sharing of a room's session and the encryption
	// with it one step: two calls must not start two sessions at once.
	sendMu sync.Mutex
}

// keyWait is how long a decryption waits for its room key: a client
// sends the key as a to-device message just before the event, and the
// two reach the agent on different paths.
const keyWait = 5 * time.Second

// NewDevice makes the device's Olm account and uploads its identity keys
// and one-time keys (POST /keys/upload).
func NewDevice(ctx context.Context, cfg DeviceConfig) (*Device, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	client, err := mautrix.NewClient("http://hearth.invalid", id.UserID(cfg.UserID), cfg.AccessToken)
	if err != nil {
		return nil, fmt.Errorf("e2ee device: %w", err)
	}
	client.DeviceID = id.DeviceID(cfg.DeviceID)
	client.Client = &http.Client{Transport: cfg.Transport, Timeout: time.Minute}
	d := &Device{cfg: cfg, client: client, log: cfg.Logger.With("device", cfg.DeviceID)}
	d.mach = crypto.NewOlmMachine(client, nil, crypto.NewMemoryStore(nil), deviceState{d})
	// A call event's content need not parse as mautrix's call structs to
	// be read here.
	d.mach.IgnorePostDecryptionParseErrors = true
	if err := d.mach.Load(ctx); err != nil {
		return nil, fmt.Errorf("e2ee device %s: load: %w", cfg.DeviceID, err)
	}
	if err := d.mach.ShareKeys(ctx, -1); err != nil {
		return nil, fmt.Errorf("e2ee device %s: upload keys: %w", cfg.DeviceID, err)
	}
	return d, nil
}

// Run hands the Olm machine the device's to-device messages (room keys
// over Olm), device-list changes of the users it tracks and its one-time
// key count (it uploads more when they run low), each time the stream
// moves, from the messages queued before the start on.
func (d *Device) Run(ctx context.Context) {
	var since uint64
	from, _ := d.cfg.Rooms.Pos()
	for {
		now, eph := d.cfg.Rooms.Pos()
		if err := d.step(ctx, since, from, now); err != nil {
			if ctx.Err() != nil {
				return
			}
			d.log.Warn("calls: e2ee device", "err", err)
		} else {
			since, from = now, now
		}
		if err := d.cfg.Rooms.Wait(ctx, now, eph); err != nil {
			return
		}
	}
}

func (d *Device) step(ctx context.Context, since, from, now uint64) error {
	msgs, _, err := d.cfg.Inbox.ToDevice(ctx, d.cfg.UserID, d.cfg.DeviceID, since, now)
	if err != nil {
		return fmt.Errorf("to-device: %w", err)
	}
	var resp mautrix.RespSync
	for _, raw := range msgs {
		var evt event.Event
		if err := json.Unmarshal(raw, &evt); err != nil {
			continue
		}
		resp.ToDevice.Events = append(resp.ToDevice.Events, &evt)
	}
	if now > from {
		users, err := d.cfg.Inbox.ChangedUsers(from, now)
		if err != nil {
			return fmt.Errorf("device lists: %w", err)
		}
		ids := make([]id.UserID, len(users))
		for i, u := range users {
			ids[i] = id.UserID(u)
		}
		// Only the users whose devices the machine keeps are fetched
		// again; the others it fetches when it first needs them.
		if resp.DeviceLists.Changed, err = d.mach.CryptoStore.FilterTrackedUsers(ctx, ids); err != nil {
			return fmt.Errorf("device lists: %w", err)
		}
	}
	counts, _, err := d.cfg.Inbox.Counts(d.cfg.UserID, d.cfg.DeviceID)
	if err != nil {
		return fmt.Errorf("one-time keys: %w", err)
	}
	resp.DeviceOTKCount.SignedCurve25519 = counts["signed_curve25519"]
	d.mach.ProcessSyncResponse(ctx, &resp, "")
	return nil
}

// Decrypt decrypts a Megolm event of roomID.
func (d *Device) Decrypt(ctx context.Context, roomID string, ev *room.ClientEvent) (string, json.RawMessage, error) {
	evt := &event.Event{Sender: id.UserID(ev.Sender), Type: event.EventEncrypted, Timestamp: ev.OriginServerTS,
		ID: id.EventID(ev.EventID), RoomID: id.RoomID(roomID), Content: event.Content{VeryRaw: ev.Content}}
	if err := evt.Content.ParseRaw(evt.Type); err != nil {
		return "", nil, fmt.Errorf("encrypted content: %w", err)
	}
	dec, err := d.mach.DecryptMegolmEvent(ctx, evt)
	if errors.Is(err, crypto.NoSessionFound) {
		c := evt.Content.AsEncrypted()
		if d.mach.WaitForSession(ctx, evt.RoomID, c.SenderKey, c.SessionID, keyWait) {
			dec, err = d.mach.DecryptMegolmEvent(ctx, evt)
		}
	}
	if err != nil {
		return "", nil, err
	}
	return dec.Type.Type, dec.Content.VeryRaw, nil
}

// Encrypt shares the room's outbound Megolm session with the devices of
// its joined members that lack it (Olm-encrypted m.room_key to-device
// messages) and encrypts the event with it.
func (d *Device) Encrypt(ctx context.Context, roomID, typ string, content json.RawMessage) (json.RawMessage, error) {
	joined, err := d.client.JoinedMembers(ctx, id.RoomID(roomID))
	if err != nil {
		return nil, fmt.Errorf("members of %s: %w", roomID, err)
	}
	members := make([]id.UserID, 0, len(joined.Joined))
	for u := range joined.Joined {
		members = append(members, u)
	}
	d.sendMu.Lock()
	defer d.sendMu.Unlock()
	if err := d.mach.ShareGroupSession(ctx, id.RoomID(roomID), members); err != nil {
		return nil, fmt.Errorf("share room key in %s: %w", roomID, err)
	}
	enc, err := d.mach.EncryptMegolmEvent(ctx, id.RoomID(roomID), event.Type{Type: typ, Class: event.MessageEventType}, content)
	if err != nil {
		return nil, fmt.Errorf("encrypt %s: %w", typ, err)
	}
	return json.Marshal(enc)
}

// EncryptFile encrypts an attachment with a new key.
func (d *Device) EncryptFile(data []byte) ([]byte, func(string) any) {
	ef := attachment.NewEncryptedFile()
	out := bytes.Clone(data)
	ef.EncryptInPlace(out)
	return out, func(mxc string) any {
		return &event.EncryptedFileInfo{EncryptedFile: *ef, URL: id.ContentURIString(mxc)}
	}
}

// deviceState is what the Olm machine asks about rooms, answered from the
// room engine's state.
type deviceState struct{ d *Device }

func (s deviceState) IsEncrypted(_ context.Context, roomID id.RoomID) (bool, error) {
	return s.d.cfg.Encryption(string(roomID)) != nil, nil
}

func (s deviceState) GetEncryptionEvent(_ context.Context, roomID id.RoomID) (*event.EncryptionEventContent, error) {
	raw := s.d.cfg.Encryption(string(roomID))
	if raw == nil {
		return nil, nil
	}
	var c event.EncryptionEventContent
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("m.room.encryption of %s: %w", roomID, err)
	}
	return &c, nil
}

// FindSharedRooms lists the encrypted rooms the device's user is in (a
// superset of those it shares with user: a personal server's user is in
// few rooms), whose outbound sessions the machine drops when user's
// devices change.
func (s deviceState) FindSharedRooms(_ context.Context, _ id.UserID) ([]id.RoomID, error) {
	ms, err := s.d.cfg.Rooms.Memberships(s.d.cfg.UserID)
	if err != nil {
		return nil, err
	}
	var out []id.RoomID
	for _, m := range ms {
		if m.Membership == "join" && s.d.cfg.Encryption(m.RoomID) != nil {
			out = append(out, id.RoomID(m.RoomID))
		}
	}
	return out, nil
}
