package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestLANDiscoveryListenAddress: a daemon whose federation listens on its
// LAN address alone is announced and routed like one listening on every
// address (the default), the two ways of announcing. Each host lists the
// other with its address, federation port, signing key and a route; the
// tray, run here through a's control socket, names b's owner (announced
// to people nearby by default); after b's clean stop a drops it and the
// tray counts no one.
func TestLANDiscoveryListenAddress(t *testing.T) {
	t.Parallel()
	lan := NewLAN(t)
	hosts := []*Host{lan.AddHost("ada-laptop"), lan.AddHost("bea-laptop")}
	ds := startLAN(t, hosts, func(i int) []string {
		if i == 0 {
			return []string{"--federation", "lan", "--federation-listen", hosts[0].IP + ":8448"}
		}
		return nil
	})
	a, b := ds[0], ds[1]
	for _, c := range []struct{ from, other *lanDaemon }{{a, b}, {b, a}} {
		ip := c.other.host.IP
		ps, _ := WaitPeers(t, c.from.Daemon, nearbyListDeadline, c.other.Name+" routed", func(ps []nearbyPeer) bool {
			return slices.ContainsFunc(ps, func(p nearbyPeer) bool { return p.ServerName == c.other.Name && p.Route != "" })
		})
		p := ps[slices.IndexFunc(ps, func(p nearbyPeer) bool { return p.ServerName == c.other.Name && p.Route != "" })]
		if !slices.Contains(p.Addresses, ip) || p.Port != 8448 || p.KeyChanged || p.KeyID != c.other.keyID ||
			p.Key == "" || p.Route != ip+":8448" {
			t.Errorf("%s sees %s as %+v; want address %s, port 8448, key %s, route %s:8448",
				c.from.Name, c.other.Name, p, ip, c.other.keyID, ip)
		}
	}

	ui := startTray(t, a.Daemon)
	waitFor(t, "b's owner named in the tray menu", func() ([]menuItem, bool) {
		items := trayMenu(t, ui.menu)
		return items, slices.ContainsFunc(items, func(it menuItem) bool {
			// "People nearby: root (bea-laptop-…)": the server name may be cut.
			return strings.HasPrefix(it.label, "People nearby: ") && strings.Contains(it.label, " (bea-laptop")
		})
	})
	if err := b.Stop(); err != nil {
		t.Fatalf("stopping %s: %v", b.Name, err)
	}
	WaitPeers(t, a.Daemon, nearbyGoneDeadline, b.Name+" gone after its clean stop", func(ps []nearbyPeer) bool {
		return !slices.ContainsFunc(ps, func(p nearbyPeer) bool { return p.ServerName == b.Name })
	})
	label := fmt.Sprintf("People nearby: %d", 0)
	waitFor(t, label+" in the tray menu", func() ([]menuItem, bool) {
		items := trayMenu(t, ui.menu)
		return items, hasItem(items, label)
	})
}
