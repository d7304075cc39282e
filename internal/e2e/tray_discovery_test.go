package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-chat/hearth/localapi/control"
)

// TestTraySwitchesDiscovery: the tray's discovery items switch LAN
// discovery of the running daemon (issue 11: "discovery can be set to
// browse-only or switched off; the settings are in the tray"). The
// daemon starts with discovery off; "Discovery: find others only" starts
// it browsing (hearth peers lists again, `hearth peers mode` says browse,
// hearth.conf says lan_discovery = browse), "Discovery: off" stops it;
// the tray checks the mode in force. Discovery runs on loopback only
// (lan_interfaces = lo): nothing reaches this machine's networks.
func TestTraySwitchesDiscovery(t *testing.T) {
	d := NewDaemon(t, t.TempDir())
	d.Extra = []string{"--lan-discovery", "off", "--lan-interfaces", "lo"}
	d.Start()
	ui := startTray(t, d)
	checked := func(label string) {
		t.Helper()
		waitFor(t, "the tray checking "+label, func() ([]menuItem, bool) {
			items := trayMenu(t, ui.menu)
			return items, hasItem(items, "✓ "+label)
		})
	}
	peers := func() control.PeersStatus {
		t.Helper()
		code, out, errOut := runHearth(t, "peers", "--json", "--data-dir", d.DataDir, "--client-listen", d.Addr)
		if code != 0 {
			t.Fatalf("hearth peers: exit %d: %s", code, errOut)
		}
		var st control.PeersStatus
		noErr(t, json.Unmarshal([]byte(out), &st), "parse hearth peers --json")
		return st
	}
	mode := func() string {
		t.Helper()
		code, out, errOut := runHearth(t, "peers", "mode", "--data-dir", d.DataDir, "--client-listen", d.Addr)
		if code != 0 {
			t.Fatalf("hearth peers mode: exit %d: %s", code, errOut)
		}
		return out
	}
	checked("Discovery: off")
	if st := peers(); st.Enabled {
		t.Fatalf("discovery runs at start with lan_discovery = off: %+v", st)
	}

	ui.click("Discovery: find others only")
	checked("Discovery: find others only")
	if st := peers(); !st.Enabled {
		t.Fatalf("discovery not running after switching to browse: %+v", st)
	}
	if out := mode(); !strings.HasPrefix(out, "LAN discovery browse:") {
		t.Fatalf("hearth peers mode after switching to browse: %q", out)
	}
	if conf, _ := os.ReadFile(filepath.Join(d.DataDir, "hearth.conf")); !strings.Contains(string(conf), "lan_discovery = browse") {
		t.Fatalf("hearth.conf after switching to browse:\n%s", conf)
	}

	ui.click("Discovery: off")
	checked("Discovery: off")
	if st := peers(); st.Enabled {
		t.Fatalf("discovery still running after switching off: %+v", st)
	}
	if out := mode(); !strings.HasPrefix(out, "LAN discovery off:") {
		t.Fatalf("hearth peers mode after switching off: %q", out)
	}
}
