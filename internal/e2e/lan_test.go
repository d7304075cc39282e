package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLANDiscoveryBetweenNamespaces runs two real daemons in two network
// namespaces joined by a veth pair, a two-machine LAN in miniature. Each
// announces itself over mDNS and finds the other: `hearth peers --json`
// lists the other with its address, federation port, signing key and a
// federation route. When one stops, the other drops it. Both daemons use
// the default lan_discovery = on; federation listens on the LAN address
// for one and on all addresses for the other (the two ways of announcing).
// The tray names b's owner (announced to people nearby by default), then
// shows "People nearby: 0".
func TestLANDiscoveryBetweenNamespaces(t *testing.T) {
	lan := newVethLAN(t)
	certs := newFedNet(t) // only its CA: the daemons here are started in the namespaces
	// LAN-only names (.local): discovery routes no other kind.
	a := startInNamespace(t, certs, lan.ns[0], "hs-a.local", lan.ip[0]+":8448")
	b := startInNamespace(t, certs, lan.ns[1], "hs-b.local", "0.0.0.0:8448")

	for _, c := range []struct {
		from, other *nsDaemon
		ip          string
	}{{a, b, lan.ip[1]}, {b, a, lan.ip[0]}} {
		p := c.from.waitPeer(t, c.other.name, true)
		if !slices.Contains(p.Addresses, c.ip) || p.Port != 8448 || p.KeyChanged || p.KeyID != c.other.keyID ||
			p.Key == "" || p.Route != c.ip+":8448" {
			t.Errorf("%s sees %s as %+v; want address %s, port 8448, key %s, route %s:8448",
				c.from.name, c.other.name, p, c.ip, c.other.keyID, c.ip)
		}
		if n := c.from.statusPeers(t); n != 1 {
			t.Errorf("%s: status says %d peers, want 1", c.from.name, n)
		}
	}
	if !strings.Contains(a.logs.String(), "LAN discovery: peer found; federation to it goes over the LAN") {
		t.Errorf("%s did not route federation to its peer:\n%s", a.name, a.logs.String())
	}
	// The tray, run here, reaches a's control API through the socket in
	// its data dir and shows the count as a menu label.
	ui := startTray(t, &Daemon{DataDir: a.dataDir, Addr: "127.0.0.1:8008", Name: a.name})
	nearby := func(n int) {
		label := fmt.Sprintf("People nearby: %d", n)
		waitFor(t, label+" in the tray menu", func() ([]menuItem, bool) {
			items := trayMenu(t, ui.menu)
			return items, hasItem(items, label)
		})
	}
	// b's owner is announced to people nearby (on by default for the
	// owner), so the label names them rather than counting Hearths.
	waitFor(t, "b's owner named in the tray menu", func() ([]menuItem, bool) {
		items := trayMenu(t, ui.menu)
		return items, slices.ContainsFunc(items, func(it menuItem) bool {
			return strings.HasPrefix(it.label, "People nearby: ") && strings.HasSuffix(it.label, " ("+b.name+")")
		})
	})

	b.stop(t)
	a.waitPeer(t, b.name, false)
	nearby(0)
}

// vethLAN is two network namespaces joined by a veth pair.
type vethLAN struct {
	ns [2]string
	ip [2]string
}

func newVethLAN(t *testing.T) *vethLAN {
	t.Helper()
	id := os.Getpid() % 100000
	l := &vethLAN{ns: [2]string{fmt.Sprintf("hearth-e2e-%d-a", id), fmt.Sprintf("hearth-e2e-%d-b", id)},
		ip: [2]string{"10.213.7.1", "10.213.7.2"}}
	if out, err := exec.Command("ip", "netns", "add", l.ns[0]).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace (needs root and iproute2): %v: %s", err, out)
	}
	// Deleting a namespace also deletes its end of the veth pair, and with
	// it the other end.
	t.Cleanup(func() {
		for _, ns := range l.ns {
			exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	veth := [2]string{fmt.Sprintf("hl%da", id), fmt.Sprintf("hl%db", id)}
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", l.ns[1])
	ip("link", "add", veth[0], "type", "veth", "peer", "name", veth[1])
	for i, ns := range l.ns {
		ip("link", "set", veth[i], "netns", ns)
		ip("-n", ns, "addr", "add", l.ip[i]+"/24", "dev", veth[i])
		ip("-n", ns, "link", "set", veth[i], "up")
		ip("-n", ns, "link", "set", "lo", "up")
		// mDNS goes to 224.0.0.251; discovery names the interface, but a
		// multicast route makes that independent of the kernel's choice.
		ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", veth[i])
	}
	return l
}

// nsDaemon is a hearth run inside a network namespace. The harness's
// Daemon cannot be used: its readiness check dials the client API from
// this namespace. The control socket in the data dir reaches across
// namespaces (it is a file), so the CLI runs here.
type nsDaemon struct {
	name, dataDir, keyID string
	cmd                  *exec.Cmd
	logs                 *logBuffer
	done                 chan struct{}
}

var readyKeyID = regexp.MustCompile(`hearth is ready.*key_id=(ed25519:\S+)`)

func startInNamespace(t *testing.T, certs *fedNet, ns, name, fedListen string) *nsDaemon {
	t.Helper()
	cert, key := certs.issue(name)
	d := &nsDaemon{name: name, dataDir: t.TempDir(), logs: &logBuffer{}, done: make(chan struct{})}
	d.cmd = exec.Command("ip", "netns", "exec", ns, hearthBin, "run", "--data-dir", d.dataDir,
		"--client-listen", "127.0.0.1:8008", "--server-name", name, "--key-store", "file",
		"--federation-listen", fedListen, "--tls-cert", cert, "--tls-key", key, "--ca-file", certs.caFile)
	d.cmd.Env = childEnv()
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	noErr(t, d.cmd.Start(), "start hearth in %s", ns)
	go func() { d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		d.stop(t)
		if t.Failed() {
			t.Logf("%s output:\n%s", name, d.logs.String())
		}
	})
	deadline := time.Now().Add(startDeadline)
	for {
		if m := readyKeyID.FindStringSubmatch(d.logs.String()); m != nil {
			d.keyID = m[1]
			return d
		}
		select {
		case <-d.done:
			t.Fatalf("%s exited during start:\n%s", name, d.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s was not ready within %v:\n%s", name, startDeadline, d.logs.String())
		}
	}
}

// stop sends SIGTERM (ip netns exec has exec'd hearth, so the signal
// reaches it) and fails the test unless it exits cleanly.
func (d *nsDaemon) stop(t *testing.T) {
	select {
	case <-d.done:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		if err := d.cmd.ProcessState; err != nil && !err.Success() {
			t.Errorf("%s did not exit cleanly: %v", d.name, err)
		}
	case <-time.After(stopDeadline):
		t.Errorf("%s did not exit within %v of SIGTERM", d.name, stopDeadline)
		d.cmd.Process.Kill()
		<-d.done
	}
}

type lanPeer struct {
	ServerName string   `json:"server_name"`
	Addresses  []string `json:"addresses"`
	Port       int      `json:"port"`
	KeyID      string   `json:"key_id"`
	Key        string   `json:"key"`
	KeyChanged bool     `json:"key_changed"`
	Route      string   `json:"route"`
}

func (d *nsDaemon) peers(t *testing.T) []lanPeer {
	t.Helper()
	code, out, errOut := runHearth(t, "peers", "--json", "--data-dir", d.dataDir, "--key-store", "file")
	if code != 0 {
		t.Fatalf("hearth peers on %s: exit %d: %s", d.name, code, errOut)
	}
	var st struct {
		Enabled bool      `json:"enabled"`
		Peers   []lanPeer `json:"peers"`
	}
	noErr(t, json.Unmarshal([]byte(out), &st), "hearth peers --json: %s", out)
	if !st.Enabled {
		t.Fatalf("%s: LAN discovery is not enabled: %s", d.name, out)
	}
	return st.Peers
}

func (d *nsDaemon) statusPeers(t *testing.T) int {
	t.Helper()
	code, out, errOut := runHearth(t, "status", "--json", "--data-dir", d.dataDir, "--key-store", "file")
	if code != 0 {
		t.Fatalf("hearth status on %s: exit %d: %s", d.name, code, errOut)
	}
	var st struct {
		Peers int `json:"peers"`
	}
	noErr(t, json.Unmarshal([]byte(out), &st), "hearth status --json: %s", out)
	return st.Peers
}

// lanDeadline covers a peer's appearance (its start announcements, well
// under a second) and its removal after a clean stop (its goodbye, one
// second), with room for a loaded machine.
const lanDeadline = 20 * time.Second

// waitPeer waits until name is listed (present) or no longer (!present).
func (d *nsDaemon) waitPeer(t *testing.T, name string, present bool) lanPeer {
	t.Helper()
	deadline := time.Now().Add(lanDeadline)
	for {
		ps := d.peers(t)
		i := slices.IndexFunc(ps, func(p lanPeer) bool { return p.ServerName == name })
		if present && i >= 0 {
			return ps[i]
		}
		if !present && i < 0 {
			return lanPeer{}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: after %v, %s is still %s: %+v", d.name, lanDeadline, name,
				map[bool]string{true: "not listed", false: "listed"}[present], ps)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
