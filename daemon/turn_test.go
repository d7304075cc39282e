package daemon

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/hearth-chat/hearth/calls/turn"
	"github.com/hearth-chat/hearth/internal/secrets"
)

// The turn keys are checked together and by shape, wherever they come
// from.
func TestTURNConfigRules(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(*Config)
		want string // "" accepted, else part of the error
	}{
		{"defaults", func(*Config) {}, ""},
		{"on with allowed loopback", func(c *Config) { c.TURN, c.TURNAllowNetworks = TURNOn, "127.0.0.0/8, ::1/128" }, ""},
		{"unknown mode", func(c *Config) { c.TURN = "yes" }, "turn must be auto, on or off"},
		{"uris without secret", func(c *Config) { c.TURNURIs = "turn:t.example:3478" }, "turn_uris and turn_shared_secret go together"},
		{"secret without uris", func(c *Config) { c.TURNSharedSecret = "s" }, "turn_uris and turn_shared_secret go together"},
		{"external", func(c *Config) {
			c.TURNURIs, c.TURNSharedSecret = "turn:t.example:3478?transport=udp, turns:t.example:5349", "s"
		}, ""},
		{"not a turn uri", func(c *Config) { c.TURNURIs, c.TURNSharedSecret = "https://t.example", "s" }, "not a turn: or turns: URI"},
		{"listen on a host name", func(c *Config) { c.TURNListen = "localhost:3478" }, "must be an IP address"},
		{"listen without port", func(c *Config) { c.TURNListen = "127.0.0.1" }, "not host:port"},
		{"short lifetime", func(c *Config) { c.TURNUserLifetime = 5 }, "at least 60"},
		{"negative bandwidth", func(c *Config) { c.TURNBandwidth = -1 }, "must not be negative"},
		{"bad network", func(c *Config) { c.TURNAllowNetworks = "127.0.0.1/33" }, "turn_allow_networks"},
	} {
		c := Defaults()
		c.ServerName = "test.local"
		tc.set(&c)
		err := c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one saying %q", tc.name, err, tc.want)
		}
	}
}

// startTURN: off with federation off under auto, the external server when
// turn_uris is set, the built-in relay on loopback with turn = on and
// federation off; its secret is made once and kept in the secret store.
func TestStartTURNModes(t *testing.T) {
	store := secrets.FileStore{Dir: t.TempDir()}
	d := &Daemon{cfg: Defaults()}
	d.cfg.Federation = FederationOff
	if r, err := d.startTURN(store); err != nil || r.server != nil || r.ICEServers("@a:test.local") != nil {
		t.Fatalf("auto with federation off: %+v, %v; want no relay", r, err)
	} else if _, _, _, _, ok := r.TURNCredentials("@a:test.local", "127.0.0.1"); ok {
		t.Fatal("credentials without a relay")
	}
	d.cfg.TURNURIs, d.cfg.TURNSharedSecret = "turn:t.example:3478?transport=udp", "coturn secret"
	r, err := d.startTURN(store)
	if err != nil || r.server != nil {
		t.Fatalf("external: %+v, %v; want no built-in relay", r, err)
	}
	uris, user, pass, _, _ := r.TURNCredentials("@a:test.local", "127.0.0.1")
	if len(uris) != 1 || uris[0] != "turn:t.example:3478?transport=udp" || pass != turn.Password([]byte("coturn secret"), user) {
		t.Fatalf("external credentials: %v %q %q", uris, user, pass)
	}
	d.cfg.TURNURIs, d.cfg.TURNSharedSecret = "", ""
	d.cfg.TURN, d.cfg.TURNListen = TURNOn, "127.0.0.1:0"
	first, err := d.startTURN(store)
	if err != nil || first.server == nil {
		t.Fatalf("on with federation off: %+v, %v", first, err)
	}
	defer first.stop()
	uris, user, pass, ttl, _ := first.TURNCredentials("@a:test.local", "192.168.1.9")
	if !strings.HasPrefix(uris[0], "turn:127.0.0.1:") || ttl.Seconds() != 86400 {
		t.Fatalf("built-in on loopback: %v, ttl %v", uris, ttl)
	}
	secret, err := loadOrCreateTURNSecret(store)
	if err != nil || pass != turn.Password(secret, user) {
		t.Fatalf("the relay's password is not made with the stored secret (%v)", err)
	}
	if again, _ := loadOrCreateTURNSecret(store); string(again) != string(secret) {
		t.Fatal("the TURN secret changed between two reads")
	}
}

// Switching federation through the control API moves the relay with it
// under turn = auto: off closes its port (and /voip/turnServer has no
// relay to name), lan opens it again.
func TestTURNFollowsFederationMode(t *testing.T) {
	d, c, _, _ := modeDaemon(t, t.TempDir(), "federation = lan\nfederation_listen = 127.0.0.1:0\nturn_listen = 127.0.0.1:0\n")
	ctx := context.Background()
	if _, _, _, _, ok := d.turn.TURNCredentials("@a:test.local", "127.0.0.1"); !ok {
		t.Fatal("no relay with federation = lan")
	}
	port := d.turn.server.Port()
	if _, err := c.SetFederationMode(ctx, FederationOff); err != nil {
		t.Fatal(err)
	}
	if _, _, _, _, ok := d.turn.TURNCredentials("@a:test.local", "127.0.0.1"); ok {
		t.Fatal("the relay is still handed out after federation was switched off")
	}
	if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
		t.Fatalf("the relay's TCP port is still held after federation was switched off: %v", err)
	} else {
		ln.Close()
	}
	if _, err := c.SetFederationMode(ctx, FederationLAN); err != nil {
		t.Fatal(err)
	}
	if _, _, _, _, ok := d.turn.TURNCredentials("@a:test.local", "127.0.0.1"); !ok {
		t.Fatal("the relay did not come back with federation = lan")
	}
}
