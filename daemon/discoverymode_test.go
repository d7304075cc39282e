package daemon

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/hearth-chat/hearth/localapi/control"
)

// TestDiscoveryModeSwitchesLive: POST /_hearth/v1/discovery/mode (the
// tray's discovery items, `hearth peers mode`) switches LAN discovery
// between off, browse and on in the running daemon, writes lan_discovery
// to the config file, shows the mode in the status, and refuses an
// unknown mode leaving the file and discovery as they were. Discovery
// runs on loopback only here (lan_interfaces = lo), so the test sends
// nothing to this machine's networks.
func TestDiscoveryModeSwitchesLive(t *testing.T) {
	conf := "federation = lan\nfederation_listen = 127.0.0.1:0\nlan_interfaces = lo\n"
	d, c, file, _ := modeDaemon(t, t.TempDir(), conf) // HEARTH_LAN_DISCOVERY=off (freshConfig)
	ctx := context.Background()
	if st, err := c.Status(ctx); err != nil || st.Discovery != "off" || d.lanService() != nil {
		t.Fatalf("status at start: %+v %v", st, err)
	}

	var ce *control.Error
	if _, err := c.SetDiscoveryMode(ctx, "loud"); !errors.As(err, &ce) || ce.Status != 400 {
		t.Fatalf("an unknown mode: %v", err)
	}
	if got, _ := os.ReadFile(file); string(got) != conf {
		t.Fatalf("a refused mode changed the config:\n%s", got)
	}

	st, err := c.SetDiscoveryMode(ctx, "browse")
	if err != nil || st.Mode != "browse" {
		t.Fatalf("switch to browse: %+v %v", st, err)
	}
	if !st.Running {
		t.Skip("LAN discovery cannot open the mDNS socket here")
	}
	if peers, err := c.Peers(ctx); err != nil || !peers.Enabled {
		t.Fatalf("peers after switching to browse: %+v %v", peers, err)
	}
	if got, _ := os.ReadFile(file); !strings.Contains(string(got), "lan_discovery = browse\n") {
		t.Fatalf("config after switching to browse:\n%s", got)
	}
	browse := d.lanService()

	// With federation switched off meanwhile: on still starts (nothing to
	// announce without a listener) and replaces the browsing service.
	if _, err := c.SetFederationMode(ctx, FederationOff); err != nil {
		t.Fatal(err)
	}
	if st, err = c.SetDiscoveryMode(ctx, "on"); err != nil || st.Mode != "on" || !st.Running || d.lanService() == browse {
		t.Fatalf("switch to on: %+v %v", st, err)
	}
	if s, _ := c.Status(ctx); s.Discovery != "on" {
		t.Fatalf("status after switching on: %q", s.Discovery)
	}

	if st, err = c.SetDiscoveryMode(ctx, "off"); err != nil || st.Mode != "off" || st.Running {
		t.Fatalf("switch off: %+v %v", st, err)
	}
	if peers, err := c.Peers(ctx); err != nil || peers.Enabled {
		t.Fatalf("peers after switching off: %+v %v", peers, err)
	}
	if _, err := c.ForgetPeer(ctx, "anna.local"); !errors.As(err, &ce) || ce.Status != 409 {
		t.Fatalf("forget with discovery off: %v", err)
	}
	if got, _ := os.ReadFile(file); !strings.Contains(string(got), "lan_discovery = off\n") {
		t.Fatalf("config after switching off:\n%s", got)
	}
}
