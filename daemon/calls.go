package daemon

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
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
	if c.EchoTest != "on" && c.EchoTest != "off" {
		return fmt.Errorf("echo_test must be on or off, not %q", c.EchoTest)
	}
	if c.Voicemail != "on" && c.Voicemail != "off" {
		return fmt.Errorf("voicemail must be on or off, not %q", c.Voicemail)
	}
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
	cfg := agent.Config{HostIP: d.callHostIP}
	if d.cfg.EchoTest == "on" {
		ok, err := d.accounts.EnsureService(ctx, echoLocalpart, "Echo test")
		if err != nil {
			return fmt.Errorf("echo test user: %w", err)
		}
		if !ok {
			slog.Warn("calls: @echo is a person's account here; the echo test is off")
		} else if err := d.accounts.EnsureDevice(ctx, echoLocalpart, echoDevice, "Hearth echo test"); err != nil {
			return fmt.Errorf("echo test device: %w", err)
		} else {
			cfg.Echo = agent.Party{UserID: d.accounts.UserID(echoLocalpart), DeviceID: echoDevice}
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
	if d.cfg.Voicemail != "on" {
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
	if err := d.accounts.EnsureDevice(ctx, owner, voicemailDevice, "Hearth voicemail"); err != nil {
		return nil, fmt.Errorf("voicemail device: %w", err)
	}
	cfg.Owner = agent.Party{UserID: d.accounts.UserID(owner), DeviceID: voicemailDevice}
	repo := d.api.Media()
	return &agent.Voicemail{
		Audio: agent.MediaAudio{Greeting: greeting, Dir: dir},
		Store: func(ctx context.Context, userID string, file []byte, name string) (string, error) {
			if repo == nil {
				return "", fmt.Errorf("no media store")
			}
			id, err := repo.Store(ctx, userID, media.Upload{Body: bytes.NewReader(file), ContentLength: int64(len(file)),
				ContentType: "audio/ogg", Filename: name})
			if err != nil {
				return "", err
			}
			return repo.MXC(id), nil
		},
		EnsureDevice: func(ctx context.Context) error {
			return d.accounts.EnsureDevice(ctx, owner, voicemailDevice, "Hearth voicemail")
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
