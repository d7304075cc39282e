package discovery

import (
	"net/netip"
	"testing"
	"time"
)

// TestSetTXTReannounces: SetTXT changes what the running service
// announces; the next tick announces at once (RFC 6762 §8.4) and the
// neighbour's table carries the new fields; setting the same fields again
// sends nothing; Config.TXT's fields stay.
func TestSetTXTReannounces(t *testing.T) {
	a, _ := offline(t, "anna.local", "10.77.0.1", 8448)
	b, _ := offline(t, "bob.local", "10.77.0.2", 8448)
	a.ifs[0].addrs = append(a.ifs[0].addrs, netip.MustParsePrefix("10.77.0.2/24"))
	b.ifs = a.ifs
	a.txt.fixed = []string{"fixed=1"} // as Config.TXT would
	a.sendHook = func(p []byte, _ iface) { b.handlePacket(t.Context(), p, 7, time.Now()) }
	now := time.Unix(1_800_000_000, 0)
	a.tick(now)                                                               // the start announcement
	a.annLeft, a.respondAt, a.nextQuery = 0, map[int]time.Time{}, time.Time{} // only announcements from here

	peerTXT := func() map[string]string {
		for _, p := range b.Peers() {
			if p.ServerName == "anna.local" {
				return p.TXT
			}
		}
		t.Fatal("anna.local is not listed")
		return nil
	}
	if _, ok := peerTXT()["u0"]; ok {
		t.Fatal("u0 announced before it was set")
	}
	a.SetTXT([]string{"u0=anna\tAnna"})
	a.sent = 0
	a.tick(now.Add(time.Minute))
	if a.sent == 0 {
		t.Fatal("SetTXT did not re-announce")
	}
	if got := peerTXT(); got["u0"] != "anna\tAnna" || got["fixed"] != "1" {
		t.Fatalf("neighbour sees TXT %q", got)
	}
	a.tick(now.Add(time.Minute + announceGap)) // the second announcement
	a.SetTXT([]string{"u0=anna\tAnna Bell"})
	a.tick(now.Add(2 * time.Minute))
	if got := peerTXT(); got["u0"] != "anna\tAnna Bell" {
		t.Fatalf("after a display name change the neighbour sees %q", got)
	}
	a.tick(now.Add(2*time.Minute + announceGap))
	a.SetTXT([]string{"u0=anna\tAnna Bell"})
	a.sent = 0
	a.tick(now.Add(3 * time.Minute))
	if a.sent != 0 {
		t.Fatalf("the same TXT again sent %d packets", a.sent)
	}
	if txt := a.TXT(); len(txt) != 5 || txt[3] != "fixed=1" || txt[4] != "u0=anna\tAnna Bell" {
		t.Fatalf("TXT() = %q", txt)
	}
}
