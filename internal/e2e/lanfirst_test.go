package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/hearth-chat/hearth/localapi/control"
)

// TestLANFirstPublicNames is issue 11's "LAN-first routing": two daemons
// with public names (hs-a.test, hs-b.test) that federate over "the
// internet" — a second link between the two hosts, on its own network,
// which discovery does not run on (lan_interfaces = eth0), reached
// through federation_servers with CA certificates — also hear each other
// on the LAN. Before they ever federated, each lists the other
// unconfirmed (no internet key to check its announcement against) and
// routes nothing over the LAN. Once they federated (bob joins alice's
// room over the internet), each learned the other's key there, which
// confirms the LAN announcement: federation goes over the LAN. The
// internet goes (its link down): they keep chatting over the LAN. The
// internet comes back and hs-b leaves the LAN (discovery switched off:
// goodbye; then its LAN cable pulled): federation goes back to the
// internet route. Every message arrives once, in order.
func TestLANFirstPublicNames(t *testing.T) {
	t.Parallel()
	lan := NewLAN(t)
	ha, hb := lan.AddHost("alpha"), lan.AddHost("beta")
	// "The internet": a veth between the two hosts on 10.48.0.0/24.
	inet := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	inet("-n", ha.NS, "link", "add", "wan0", "type", "veth", "peer", "name", "wan0", "netns", hb.NS)
	inet("-n", ha.NS, "addr", "add", "10.48.0.1/24", "dev", "wan0")
	inet("-n", hb.NS, "addr", "add", "10.48.0.2/24", "dev", "wan0")
	inet("-n", ha.NS, "link", "set", "wan0", "up")
	inet("-n", hb.NS, "link", "set", "wan0", "up")

	ca := &fedNet{t: t, dir: t.TempDir()}
	ca.makeCA()
	daemon := func(h *Host, name, other, otherWAN string) *Daemon {
		cert, key := ca.issue(name)
		d := h.Daemon("--server-name", name, "--federation", "internet", "--federation-listen", ":8448",
			"--tls-cert", cert, "--tls-key", key, "--ca-file", ca.caFile,
			"--federation-servers", other+"="+otherWAN+":8448", "--federation-allow-networks", "10.0.0.0/8",
			"--lan-interfaces", "eth0", "--key-store", "file")
		d.Name = name
		return d
	}
	da, db := daemon(ha, "hs-a.test", "hs-b.test", "10.48.0.2"), daemon(hb, "hs-b.test", "hs-a.test", "10.48.0.1")
	StartAll(t, da, db)

	peersOf := func(d *Daemon) []control.Peer {
		t.Helper()
		code, out, errOut := runHearth(t, "peers", "--json", "--data-dir", d.DataDir)
		if code != 0 {
			t.Fatalf("hearth peers on %s: exit %d: %s", d.Name, code, errOut)
		}
		var st control.PeersStatus
		noErr(t, json.Unmarshal([]byte(out), &st), "parse hearth peers --json")
		return st.Peers
	}
	waitPeer := func(d *Daemon, what string, ok func(control.Peer) bool) {
		t.Helper()
		waitFor(t, d.Name+": "+what, func() ([]control.Peer, bool) {
			ps := peersOf(d)
			return ps, slices.ContainsFunc(ps, ok)
		})
	}
	// Heard on the LAN, never federated with: unconfirmed, not routed.
	waitPeer(da, "hs-b.test listed unconfirmed", func(p control.Peer) bool {
		return p.ServerName == "hs-b.test" && p.InternetKey == "unconfirmed" && p.Route == ""
	})
	waitPeer(db, "hs-a.test listed unconfirmed", func(p control.Peer) bool {
		return p.ServerName == "hs-a.test" && p.InternetKey == "unconfirmed" && p.Route == ""
	})

	alice, bob := Account(t, da, "alice"), Account(t, db, "bob")
	room := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomAliasName: "lanfirst"})
	_, err := bob.JoinRoom(ctx(t), "#lanfirst:hs-a.test", nil)
	noErr(t, err, "bob joins over the internet")

	// The keys learned over the internet confirm the LAN announcements.
	waitPeer(da, "hs-b.test confirmed and routed over the LAN", func(p control.Peer) bool {
		return p.ServerName == "hs-b.test" && p.InternetKey == "confirmed" && p.Route == hb.IP+":8448"
	})
	waitPeer(db, "hs-a.test confirmed and routed over the LAN", func(p control.Peer) bool {
		return p.ServerName == "hs-a.test" && p.InternetKey == "confirmed" && p.Route == ha.IP+":8448"
	})

	// Each message is awaited on both servers before the next is sent, so
	// both timelines have one order to compare with: every message once,
	// in the order sent.
	var want []string
	say := func(c *mautrix.Client, text string) {
		t.Helper()
		SendText(t, c, room, text)
		want = append(want, text)
		for _, o := range []*mautrix.Client{alice, bob} {
			waitFor(t, fmt.Sprintf("%q on %s", text, o.UserID), func() ([]string, bool) {
				got := roomTexts(t, o, room)
				return got, slices.Equal(got, want)
			})
		}
	}
	say(alice, "hello over whatever")
	say(bob, "hello back")

	// The internet goes: the LAN carries on.
	inet("-n", ha.NS, "link", "set", "wan0", "down")
	for i := range 3 {
		say(alice, fmt.Sprintf("no internet, alice %d", i))
		say(bob, fmt.Sprintf("no internet, bob %d", i))
	}

	// The internet comes back, and hs-b leaves the LAN: it switches
	// discovery off (goodbye), then its LAN cable is pulled.
	inet("-n", ha.NS, "link", "set", "wan0", "up")
	code, out, errOut := runHearth(t, "peers", "mode", "off", "--data-dir", db.DataDir)
	if code != 0 || !strings.Contains(out, "off") {
		t.Fatalf("hearth peers mode off on hs-b: exit %d: %s%s", code, out, errOut)
	}
	waitFor(t, "hs-a dropping hs-b after its goodbye", func() ([]control.Peer, bool) {
		ps := peersOf(da)
		return ps, !slices.ContainsFunc(ps, func(p control.Peer) bool { return p.ServerName == "hs-b.test" })
	})
	hb.Unplug()
	for i := range 3 {
		say(alice, fmt.Sprintf("back on the internet, alice %d", i))
		say(bob, fmt.Sprintf("back on the internet, bob %d", i))
	}
}
