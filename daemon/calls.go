package daemon

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/hearth-chat/hearth/calls/agent"
	callmedia "github.com/hearth-chat/hearth/calls/media"
	"github.com/hearth-chat/hearth/internal/media"
	"github.com/hearth-chat/hearth/localapi/control"
)

// The call agent's accounts and devices (calls/agent): the echo test
// user, a service account with no password, and the device each party
// speaks as, whose ID is the party_id of its call events.
const (
	echoLocalpart   = "echo"
	echoDevice      = "HEARTHECHO"
	voicemailDevice = "HEARTHVOICEMAIL"
)

// validateCalls checks the call agent's keys (Validate).
func (c *Config) validateCalls() error {
	if c.VoicemailAfter < 1 || c.VoicemailAfter > 600 {
		return fmt.Errorf("voicemail_after must be 1 to 600 seconds")
	}
	if c.VoicemailMax < 5 || c.VoicemailMax > 3600 {
		return fmt.Errorf("voicemail_max must be 5 to 3600 seconds")
	}
	return nil
}

// startCalls starts the call agent: echo (unless echo_test = off, or a
// person holds the name @echo from before it was reserved) and voicemail
// for the owner (unless voicemail = off). It runs after TURN, whose relay
// its calls use, and federation, through which echo joins rooms elsewhere.
func (d *Daemon) startCalls() error {
	ctx := context.Background()
	cfg := agent.Config{HostIP: d.callHostIP, Encrypted: func(roomID string) bool { return d.roomEncryption(roomID) != nil }}
	if d.cfg.EchoTest {
		ok, err := d.accounts.EnsureService(ctx, echoLocalpart, "Echo test")
		if err != nil {
			return fmt.Errorf("echo test user: %w", err)
		}
		if !ok {
			slog.Warn("calls: @echo is a person's account here; the echo test is off")
		} else if cfg.Echo, err = d.callParty(ctx, echoLocalpart, echoDevice, "Hearth echo test"); err != nil {
			return fmt.Errorf("echo test device: %w", err)
		}
	}
	if d.turn != nil {
		// Asked per call: the relay follows the federation mode.
		cfg.ICEServers = func(userID string) []webrtc.ICEServer {
			var out []webrtc.ICEServer
			for _, s := range d.turn.ICEServers(userID) {
				out = append(out, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
			}
			return out
		}
	}
	var joiner agent.RemoteJoiner
	if d.fed != nil {
		joiner = fedJoiner{d}
	}
	vm, err := d.voicemail(ctx, &cfg)
	if err != nil {
		return err
	}
	cfg.VoicemailAfter = time.Duration(d.cfg.VoicemailAfter) * time.Second
	cfg.VoicemailMax = time.Duration(d.cfg.VoicemailMax) * time.Second
	d.calls = agent.New(d.rooms, joiner, cfg)
	if vm != nil {
		d.calls.SetVoicemail(vm)
		d.vm = vm
	}
	d.calls.Start()
	return nil
}

func (d *Daemon) stopCalls() {
	if d.calls != nil {
		d.calls.Stop()
	}
}

// callHostIP says which of this computer's addresses the agent offers as
// host candidates: loopback always (clients on this computer), the
// others only while federation is on, i.e. while the daemon serves the
// networks it is on.
func (d *Daemon) callHostIP(ip net.IP) bool {
	if ip.IsLoopback() {
		return true
	}
	return d.cfg.Federation != FederationOff && !ip.IsLinkLocalUnicast()
}

// fedJoiner joins echo to a room on another server with the federation
// join the client API uses (calls never imports federation), through the
// server that sent the invite: it was in the room then, and it may be the
// only server this one knows there.
type fedJoiner struct{ d *Daemon }

func (j fedJoiner) JoinRemote(ctx context.Context, userID, roomID string) error {
	f := j.d.fed
	if f == nil {
		return fmt.Errorf("federation is off")
	}
	inv := j.d.rooms.CurrentStatePDU(roomID, "m.room.member", userID)
	if inv == nil {
		return fmt.Errorf("no invite to %s", roomID)
	}
	_, server, _ := strings.Cut(string(inv.SenderID()), ":")
	return f.service.JoinRoom(ctx, userID, roomID, []string{server}, map[string]any{"membership": "join", "displayname": "Echo test"})
}

// voicemail sets up voicemail for the owner (the admin account made at
// first start): the device "Hearth voicemail" it answers as, the greeting
// (voicemail_greeting, else the one that ships), where recordings are
// made, and how they are stored and told. nil when voicemail is off or
// there is no owner.
func (d *Daemon) voicemail(ctx context.Context, cfg *agent.Config) (*agent.Voicemail, error) {
	if !d.cfg.Voicemail {
		return nil, nil
	}
	owner, err := d.ownerLocalpart()
	if err != nil || owner == "" {
		return nil, err
	}
	greeting := callmedia.DefaultGreeting()
	if d.cfg.VoicemailGreeting != "" {
		if greeting, err = callmedia.LoadGreeting(d.cfg.VoicemailGreeting); err != nil {
			return nil, err // a config error, not a silent call
		}
	}
	dir := filepath.Join(d.cfg.DataDir, "voicemail")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("voicemail: %w", err)
	}
	if cfg.Owner, err = d.callParty(ctx, owner, voicemailDevice, "Hearth voicemail"); err != nil {
		return nil, fmt.Errorf("voicemail device: %w", err)
	}
	deviceID := cfg.Owner.DeviceID
	repo := d.api.Media()
	return &agent.Voicemail{
		Audio: agent.MediaAudio{Greeting: greeting, Dir: dir},
		Store: func(ctx context.Context, userID string, file []byte, name string, encrypted bool) (string, error) {
			if repo == nil {
				return "", fmt.Errorf("no media store")
			}
			typ := "audio/ogg"
			if encrypted {
				typ = "application/octet-stream" // what the ciphertext is; the type is in the event
			}
			id, err := repo.Store(ctx, userID, media.Upload{Body: bytes.NewReader(file), ContentLength: int64(len(file)),
				ContentType: typ, Filename: name})
			if err != nil {
				return "", err
			}
			return repo.MXC(id), nil
		},
		// A device re-made so keeps the device ID but not its keys (they
		// were deleted with it): until the next start voicemail then
		// answers in unencrypted rooms only.
		EnsureDevice: func(ctx context.Context) error {
			return d.accounts.EnsureDevice(ctx, owner, deviceID, "Hearth voicemail")
		},
		// Quiet under do-not-disturb; a voicemail is for the owner, so
		// "highlights" shows it.
		Notify: func(title, body string) {
			if d.cfg.DesktopNotify == "off" {
				return
			}
			if err := (desktop{}).Notify(title, body); err != nil {
				slog.Debug("calls: desktop notification", "err", err)
			}
		},
	}, nil
}

// callParty makes the device a party of the call agent speaks as. In a
// build with end-to-end encryption (agent.E2EE) it is an E2EE device
// whose keys live in memory only, so each start replaces the one before:
// the old devices of the kind (IDs starting with base) are deleted with
// their keys, and a new one with a new ID (base and a random suffix: a
// client refuses a known device ID whose keys changed) logs in and
// uploads its keys. Clients see it as a new device of the user. Without
// E2EE it is the device base, with no keys and no token, as before.
func (d *Daemon) callParty(ctx context.Context, localpart, base, name string) (agent.Party, error) {
	userID := d.accounts.UserID(localpart)
	if !agent.E2EE {
		return agent.Party{UserID: userID, DeviceID: base}, d.accounts.EnsureDevice(ctx, localpart, base, name)
	}
	devs, err := d.accounts.Devices(localpart)
	if err != nil {
		return agent.Party{}, err
	}
	var old []string
	for _, dev := range devs {
		if strings.HasPrefix(dev.ID, base) {
			old = append(old, dev.ID)
		}
	}
	if len(old) > 0 { // an empty list would mean every device to keys.DeleteDevices
		if err := d.accounts.DeleteDevices(ctx, localpart, old); err != nil {
			return agent.Party{}, err
		}
		if err := d.keys.DeleteDevices(ctx, userID, old); err != nil {
			return agent.Party{}, err
		}
	}
	deviceID := base + strings.ToUpper(rand.Text()[:8])
	sess, err := d.accounts.Login(ctx, localpart, deviceID, name, false)
	if err != nil {
		return agent.Party{}, err
	}
	dev, err := agent.NewDevice(ctx, agent.DeviceConfig{UserID: userID, DeviceID: deviceID, AccessToken: sess.AccessToken,
		Transport: handlerTransport{d.api}, Inbox: d.keys, Rooms: d.rooms, Encryption: d.roomEncryption,
		Logger: slog.Default()})
	if err != nil {
		// The agent still works in unencrypted rooms.
		slog.Warn("calls: no end-to-end encryption for the agent's device", "user", userID, "device", deviceID, "err", err)
		return agent.Party{UserID: userID, DeviceID: deviceID}, nil
	}
	return agent.Party{UserID: userID, DeviceID: deviceID, Crypto: dev}, nil
}

// roomEncryption is the content of a room's m.room.encryption; nil if the
// room has none (or this server does not have the room).
func (d *Daemon) roomEncryption(roomID string) json.RawMessage {
	pdu := d.rooms.CurrentStatePDU(roomID, "m.room.encryption", "")
	if pdu == nil {
		return nil
	}
	return json.RawMessage(pdu.Content())
}

// handlerTransport takes the call agent's E2EE devices' client API
// requests (keys upload, query and claim, to-device sends, joined
// members) to the client API's handler in process: they need no socket,
// and the client listener need not be up yet.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.RequestURI = req.URL.RequestURI()
	r.RemoteAddr = "127.0.0.1:0"
	if r.Body == nil {
		r.Body = http.NoBody
	}
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

// ownerLocalpart is the owner: the oldest admin account that is a person's
// and active ("" if there is none).
func (d *Daemon) ownerLocalpart() (string, error) {
	users, err := d.accounts.List()
	if err != nil {
		return "", err
	}
	owner, oldest := "", int64(0)
	for _, u := range users {
		if u.Admin && !u.Service && !u.Deactivated && (owner == "" || u.CreatedTS < oldest) {
			owner, oldest = u.Localpart, u.CreatedTS
		}
	}
	return owner, nil
}

// voicemailStatus is the control API status's voicemail list.
func (d *Daemon) voicemailStatus() []control.Voicemail {
	if d.vm == nil {
		return nil
	}
	var out []control.Voicemail
	for _, m := range d.vm.Messages() {
		out = append(out, control.Voicemail{Caller: m.Caller, CallerName: m.CallerName, RoomID: m.RoomID,
			EventID: m.EventID, When: m.When, DurationMs: m.DurationMs})
	}
	return out
}
