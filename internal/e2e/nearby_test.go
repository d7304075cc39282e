package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// "People nearby" (issue 11) on the namespace LAN of netns_test.go.
//
// Every daemon here runs with the default settings and nothing else: a
// data dir, `hearth run` (the harness's Bare mode). No certificate, CA,
// server name, federation_servers or federation_listen: federation is on
// for the LAN by default with a self-signed certificate that peers trust
// through the signing key's binding, the server name is <host>-<hash>.local,
// and discovery is on.

// nearbyListDeadline bounds a peer's appearance in another's list: the
// issue's 3 s (1 s in make bench).
const nearbyListDeadline = 3 * time.Second

// nearbyGoneDeadline bounds a cleanly stopped peer's disappearance: the
// issue's 2 s. Its goodbye (TTL 0, RFC 6762 §10.1) drops it one second
// after it is heard.
const nearbyGoneDeadline = 2 * time.Second

// lanDaemon is a daemon on a namespace host with what the tests learn of it.
type lanDaemon struct {
	*Daemon
	host  *Host
	keyID string
}

// startLAN starts one daemon per host with the flags given by flags(i)
// (none when nil: the default settings), all at once, and reads back
// their server names (chosen by the daemon unless flags set one) and keys.
func startLAN(t *testing.T, hosts []*Host, flags func(i int) []string) []*lanDaemon {
	t.Helper()
	if flags == nil {
		flags = func(int) []string { return nil }
	}
	var ds []*Daemon
	for i, h := range hosts {
		ds = append(ds, h.Daemon(flags(i)...))
	}
	start := time.Now()
	StartAll(t, ds...)
	t.Logf("%d daemons ready %v after launch", len(ds), time.Since(start))
	var out []*lanDaemon
	for i, d := range ds {
		name, keyID := Ready(t, d)
		d.Name = name
		out = append(out, &lanDaemon{Daemon: d, host: hosts[i], keyID: keyID})
	}
	return out
}

// waitListsOthers waits until d lists exactly the others (never itself),
// each at its host's address, the federation port and its own key.
func waitListsOthers(t *testing.T, d *lanDaemon, others []*lanDaemon) time.Duration {
	t.Helper()
	var want []string
	for _, o := range others {
		want = append(want, o.ServerName())
	}
	slices.Sort(want)
	ps, took := WaitPeers(t, d.Daemon, nearbyListDeadline, fmt.Sprintf("lists %v", want), func(ps []nearbyPeer) bool {
		return slices.Equal(peerNames(ps), want)
	})
	for _, o := range others {
		i := slices.IndexFunc(ps, func(p nearbyPeer) bool { return p.ServerName == o.ServerName() })
		p := ps[i]
		if !slices.Contains(p.Addresses, o.host.IP) || p.Port != 8448 || p.KeyID != o.keyID || p.KeyChanged || p.TLSKey == "" {
			t.Errorf("%s sees %s as %+v; want address %s, port 8448, key %s, unchanged, with its certificate bound",
				d.ServerName(), o.ServerName(), p, o.host.IP, o.keyID)
		}
	}
	return took
}

// TestNearbyThreeHosts: three machines on a LAN with nothing else, one
// daemon each, started together. Each lists the other two and not itself;
// each owner logs in with the password of the welcome banner through the
// namespace and syncs; a daemon stopped cleanly leaves the others' lists;
// one that changes address is listed at the new one; an impersonator is
// listed as a key change.
func TestNearbyThreeHosts(t *testing.T) {
	t.Parallel()
	lan := NewLAN(t)
	hosts := []*Host{lan.AddHost("anna-laptop"), lan.AddHost("ben-laptop"), lan.AddHost("cleo-desktop")}
	for _, h := range hosts {
		if out := h.Exec("ip", "route", "show", "default"); out != "" {
			t.Fatalf("%s has a default route: %s", h.NS, out)
		}
	}
	ds := startLAN(t, hosts, nil)
	names := map[string]bool{}
	for _, d := range ds {
		names[d.ServerName()] = true
	}
	if len(names) != 3 {
		t.Fatalf("three machines with three host names got server names %v", names)
	}

	for i, d := range ds {
		others := slices.Delete(slices.Clone(ds), i, i+1)
		took := waitListsOthers(t, d, others)
		t.Logf("%s listed both others %v after all were ready", d.ServerName(), took)
	}

	// The client path: the owner made at first start logs in with the
	// printed password, from the test's namespace into the host's.
	for _, d := range ds {
		user, password := Owner(t, d.Daemon)
		c := d.Client("", "")
		_, err := c.Login(ctx(t), &mautrix.ReqLogin{Type: mautrix.AuthTypePassword,
			Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: user},
			Password:   password, StoreCredentials: true})
		noErr(t, err, "log in as %s on %s", user, d.ServerName())
		who := must(c.Whoami(ctx(t))).get(t)
		if who.UserID != id.UserID(user) || who.UserID.Homeserver() != d.ServerName() {
			t.Errorf("whoami on %s: %s, want %s", d.ServerName(), who.UserID, user)
		}
		if resp := Sync(t, c, "", "", 0); resp.NextBatch == "" {
			t.Errorf("sync on %s: no next_batch", d.ServerName())
		}
	}

	// A clean stop of b, and c moves to another address (a Wi-Fi switch,
	// a new lease after sleep), at the same time to keep the test short: a
	// lists and routes c at its new address within nearbyMoveDeadline, and
	// both drop b within nearbyGoneDeadline; a and c keep each other.
	b, c := ds[1], ds[2]
	bKey := ""
	for _, p := range Peers(t, ds[0].Daemon) {
		if p.ServerName == b.ServerName() {
			bKey = p.Key
		}
	}
	if err := b.Stop(); err != nil {
		t.Fatalf("%s did not stop cleanly: %v", b.ServerName(), err)
	}
	stopped := time.Now()
	oldIP := c.host.IP
	c.host.Readdress(42)
	_, took := WaitPeers(t, ds[0].Daemon, nearbyMoveDeadline, "lists "+c.ServerName()+" at its new address", func(ps []nearbyPeer) bool {
		i := slices.IndexFunc(ps, func(p nearbyPeer) bool { return p.ServerName == c.ServerName() })
		return i >= 0 && slices.Contains(ps[i].Addresses, c.host.IP) && !slices.Contains(ps[i].Addresses, oldIP) &&
			ps[i].Route == c.host.IP+":8448"
	})
	t.Logf("%s listed %s at its new address %v after the change", ds[0].ServerName(), c.ServerName(), took)
	for _, d := range []*lanDaemon{ds[0], ds[2]} {
		WaitPeers(t, d.Daemon, nearbyGoneDeadline-time.Since(stopped), "drops "+b.ServerName(), func(ps []nearbyPeer) bool {
			return !slices.Contains(peerNames(ps), b.ServerName())
		})
		t.Logf("%s dropped %s %v after its clean stop", d.ServerName(), b.ServerName(), time.Since(stopped))
	}
	other := map[*lanDaemon]*lanDaemon{ds[0]: ds[2], ds[2]: ds[0]}
	for d, o := range other {
		if got := peerNames(Peers(t, d.Daemon)); !slices.Equal(got, []string{o.ServerName()}) {
			t.Errorf("%s lists %v after %s stopped, want only %s", d.ServerName(), got, b.ServerName(), o.ServerName())
		}
	}

	// An impersonator: a fourth machine announces b's server name with a
	// signing key of its own (a fresh data dir; its certificate binding is
	// valid, but signed by that other key). The others pinned b's key when
	// they first saw it, so they list the name as a key change and route
	// nothing to it.
	mallory := lan.AddHost("mallory")
	m := mallory.Daemon("--server-name", b.ServerName())
	m.Name = b.ServerName()
	m.Start()
	for _, d := range []*lanDaemon{ds[0], ds[2]} {
		ps, _ := WaitPeers(t, d.Daemon, nearbyListDeadline, "lists "+b.ServerName()+" as a key change", func(ps []nearbyPeer) bool {
			i := slices.IndexFunc(ps, func(p nearbyPeer) bool { return p.ServerName == b.ServerName() })
			return i >= 0 && ps[i].KeyChanged
		})
		p := ps[slices.IndexFunc(ps, func(p nearbyPeer) bool { return p.ServerName == b.ServerName() })]
		if p.Key == bKey || p.Route != "" || !slices.Contains(p.Addresses, mallory.IP) {
			t.Errorf("%s lists the impersonator as %+v; want its own key (not %s), no route, address %s",
				d.ServerName(), p, bKey, mallory.IP)
		}
		if !strings.Contains(d.Logs(), "announced another key than the one pinned") {
			t.Errorf("%s did not log the key change", d.ServerName())
		}
	}

	// The owner's answers, through `hearth peers`: on a, "keep refusing"
	// (still not routed, no longer news); on c, "accept the new key" (as
	// after a reinstall): c pins it and routes to it at once.
	a2 := ds[0]
	// The tray (run here, through a's control socket) flags the key
	// change on its people-nearby item until the owner answers.
	ui := startTray(t, a2.Daemon)
	// The item names the people nearby (the owners, announced by default)
	// or counts the peers; what matters here is the key-change flag.
	trayNearby := func(what string, flagged bool) {
		waitFor(t, what+" in the tray menu", func() ([]menuItem, bool) {
			items := trayMenu(t, ui.menu)
			for _, it := range items {
				if strings.HasPrefix(it.label, "People nearby: ") &&
					strings.HasSuffix(it.label, " · 1 key changed: accept or refuse…") == flagged {
					return items, true
				}
			}
			return items, false
		})
	}
	trayNearby("people nearby with a key change flagged", true) // the impostor
	peersCmd(t, a2.Daemon, "refuse", b.ServerName())
	trayNearby("people nearby with no key change flagged", false)
	if p := peerNamed(t, a2.Daemon, b.ServerName()); !p.KeyChanged || !p.KeyRefused || p.Route != "" {
		t.Errorf("%s after refuse: %+v", a2.ServerName(), p)
	}
	if out := peersText(t, a2.Daemon); !strings.Contains(out, "key changed, refused") {
		t.Errorf("hearth peers after refuse:\n%s", out)
	}
	peersCmd(t, c.Daemon, "accept", b.ServerName())
	WaitPeers(t, c.Daemon, nearbyListDeadline, "routes to the accepted key of "+b.ServerName(), func(ps []nearbyPeer) bool {
		i := slices.IndexFunc(ps, func(p nearbyPeer) bool { return p.ServerName == b.ServerName() })
		return i >= 0 && !ps[i].KeyChanged && ps[i].Route == mallory.IP+":8448"
	})
	if p := peerNamed(t, a2.Daemon, b.ServerName()); !p.KeyChanged || p.Route != "" {
		t.Errorf("%s routes to the key it refused: %+v", a2.ServerName(), p)
	}
}

// peersCmd runs `hearth peers VERB NAME` against d, failing on error.
func peersCmd(t *testing.T, d *Daemon, verb, name string) {
	t.Helper()
	if code, out, errOut := runHearth(t, "peers", verb, name, "--data-dir", d.DataDir); code != 0 {
		t.Fatalf("hearth peers %s %s: exit %d: %s%s", verb, name, code, out, errOut)
	}
}

// peersText is what `hearth peers` prints for d.
func peersText(t *testing.T, d *Daemon) string {
	t.Helper()
	code, out, errOut := runHearth(t, "peers", "--data-dir", d.DataDir)
	if code != 0 {
		t.Fatalf("hearth peers: exit %d: %s", code, errOut)
	}
	return out
}

// peerNamed is d's entry for name, failing when there is none.
func peerNamed(t *testing.T, d *Daemon, name string) nearbyPeer {
	t.Helper()
	ps := Peers(t, d)
	i := slices.IndexFunc(ps, func(p nearbyPeer) bool { return p.ServerName == name })
	if i < 0 {
		t.Fatalf("%s does not list %s: %+v", d.ServerName(), name, ps)
	}
	return ps[i]
}

// TestNearbySameHostName: two machines with the same host name, default
// settings, get different server names, both start and see each other.
func TestNearbySameHostName(t *testing.T) {
	t.Parallel()
	lan := NewLAN(t)
	hosts := []*Host{lan.AddHost("laptop"), lan.AddHost("laptop")}
	ds := startLAN(t, hosts, nil)
	if ds[0].ServerName() == ds[1].ServerName() || !strings.HasPrefix(ds[0].ServerName(), "laptop-") {
		t.Fatalf("two machines called laptop are %s and %s", ds[0].ServerName(), ds[1].ServerName())
	}
	for _, d := range ds {
		// What the daemon itself sees (and announces as its mDNS host).
		out, err := exec.Command("nsenter", "--target", fmt.Sprint(d.cmd.Process.Pid), "--uts", "hostname").CombinedOutput()
		noErr(t, err, "host name of %s: %s", d.ServerName(), out)
		if string(out) != "laptop\n" {
			t.Fatalf("%s runs with host name %q, want laptop", d.ServerName(), out)
		}
	}
	waitListsOthers(t, ds[0], ds[1:])
	waitListsOthers(t, ds[1], ds[:1])

	// The harness's stop, kill -9 and restart reach hearth itself in its
	// namespaces (every wrapper execs the next), and a restarted daemon,
	// with a fresh table, finds its neighbour again.
	b := ds[1]
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", b.cmd.Process.Pid))
	noErr(t, err, "read the process name")
	if string(comm) != "hearth\n" {
		t.Fatalf("the process the harness signals is %q, not hearth", comm)
	}
	b.Restart()
	waitListsOthers(t, b, ds[:1])
	b.Kill9()
	b.Start()
	waitListsOthers(t, b, ds[:1])
}

// TestNearbyAnnouncementsFromTheWire: what a daemon makes of mDNS answers
// that no daemon would send, written raw by another machine on the LAN. A
// well-formed one is listed with its key (so the raw path works and the
// refusals below are not for want of hearing); its own server name with
// another key, unknown versions, bad keys, a missing name, garbage and an
// oversized packet are not listed, and the daemon carries on. Each bad
// answer is followed by a well-formed marker: answers are handled in
// order, so once the marker is listed the bad one has been handled.
func TestNearbyAnnouncementsFromTheWire(t *testing.T) {
	t.Parallel()
	lan := NewLAN(t)
	hosts := []*Host{lan.AddHost("anna-laptop"), lan.AddHost("elsewhere")}
	a, w := startLAN(t, hosts[:1], nil)[0], hosts[1]
	lists := func(name string, key ed25519.PublicKey) func([]nearbyPeer) bool {
		return func(ps []nearbyPeer) bool {
			i := slices.IndexFunc(ps, func(p nearbyPeer) bool { return p.ServerName == name })
			return i >= 0 && ps[i].Key == base64.RawStdEncoding.EncodeToString(key) && slices.Contains(ps[i].Addresses, w.IP)
		}
	}
	key := rawPeer(t, w, "ghost-box")
	WaitPeers(t, a.Daemon, nearbyListDeadline, "lists ghost-box", lists("ghost-box", key))

	pub, _ := NewSigningKey(t)
	// Each under an instance name of its own: a browse reports an instance
	// once, so a repeated one might never reach the daemon.
	n := 0
	txt := func(txt ...string) func() {
		return func() {
			n++
			w.Announce(t, Announcement{Instance: fmt.Sprintf("bad-box-%02d", n), HostName: "bad", IP: net.ParseIP(w.IP),
				Port: 8448, TXT: txt, TTL: 120})
		}
	}
	goodKey := "key=ed25519:raw:" + base64.RawStdEncoding.EncodeToString(pub)
	junk := func(n int) func() {
		return func() {
			b := make([]byte, n)
			rand.Read(b)
			w.SendMDNS(t, b)
		}
	}
	want := []string{"ghost-box"}
	for i, c := range []struct {
		what string
		send func()
	}{
		{"its own server name with another key", txt(HearthTXT(a.ServerName(), "ed25519:raw", pub)...)},
		{"an unknown version", txt("v=2", "server_name=bad-box", goodKey)},
		{"no version", txt("server_name=bad-box", goodKey)},
		{"no server_name", txt("v=1", goodKey)},
		{"a server_name with a slash", txt("v=1", "server_name=bad/box", goodKey)},
		{"a key that is not base64", txt("v=1", "server_name=bad-box", "key=ed25519:raw:***")},
		{"a key of the wrong length", txt("v=1", "server_name=bad-box", "key=ed25519:raw:AAAA")},
		{"a key of another algorithm", txt("v=1", "server_name=bad-box", "key=rsa:raw:"+base64.RawStdEncoding.EncodeToString(pub))},
		{"random bytes", junk(600)},
		{"an oversized packet (9000 random bytes)", junk(9000)},
	} {
		c.send()
		marker := fmt.Sprintf("marker-%02d", i)
		mkey := rawPeer(t, w, marker)
		want = append(want, marker)
		ps, _ := WaitPeers(t, a.Daemon, nearbyListDeadline, "lists "+marker+" after "+c.what, lists(marker, mkey))
		if got := peerNames(ps); !slices.Equal(got, want) {
			t.Errorf("after %s, %s lists %v; want %v", c.what, a.ServerName(), got, want)
		}
	}
	if !a.Running() {
		t.Fatalf("%s is not running after the bad announcements", a.ServerName())
	}
}

// TestNearbyGoodbyeOnCleanStop: a daemon that stops cleanly says goodbye
// on the LAN, a TTL 0 answer for its service (RFC 6762 §10.1), which is
// what lets its peers drop it at once. A listener on the LAN hears its
// announcement at start and the goodbye by the time the process has
// exited. (That peers act on it: TestNearbyThreeHosts's
// nearbyGoneDeadline.)
func TestNearbyGoodbyeOnCleanStop(t *testing.T) {
	t.Parallel()
	lan := NewLAN(t)
	hosts := []*Host{lan.AddHost("ben-laptop"), lan.AddHost("listener")}
	sniff := hosts[1].SniffMDNS(t)
	b := startLAN(t, hosts[:1], nil)[0]
	name := b.ServerName()
	sniff.WaitPacket(t, nearbyListDeadline, b.host.IP, "announcing "+name, func(p MDNSPacket) bool { return p.Announces(name) })
	noErr(t, b.Stop(), "stop %s cleanly", name)
	sniff.WaitPacket(t, nearbyListDeadline, b.host.IP, "saying goodbye for "+name, func(p MDNSPacket) bool { return p.Goodbye(name) })
	for _, p := range sniff.Packets() {
		if p.Bad != nil && p.From.String() == b.host.IP {
			t.Errorf("%s sent a packet that does not parse: %v", name, p.Bad)
		}
	}
}

// nearbyMoveDeadline bounds how long a peer's new address takes to reach
// the others: the "within a few seconds". The moved daemon hears
// of its new address from netlink and announces it within netSettle.
const nearbyMoveDeadline = 3 * time.Second
