package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/internal/netns"
	"maunium.net/go/mautrix"
)

// This file is the "people nearby" harness: a LAN in miniature made of
// Linux network namespaces. A switch namespace holds a bridge; each host is
// a namespace with one veth into that bridge, an address on one /24,
// loopback, multicast, and nothing else: no default route, no way to the
// machine running the test or the internet. Each host runs a real
// `hearth run` under its own UTS namespace (its own host name), started,
// stopped and killed through the package's Daemon; the test reaches the
// daemon's client API at 127.0.0.1:8008 inside the host through a dialer
// that opens its sockets in that namespace, and its control API through the
// socket in the data dir (a file, so it crosses namespaces).

// LAN is a netns.LAN that fails the test on error and is removed when the
// test ends.
type LAN struct {
	*netns.LAN
	t *testing.T
}

// Host is one machine on a LAN (a netns.Host) that fails the test on
// error and starts daemons.
type Host struct {
	*netns.Host
	lan *LAN
}

// NewLAN makes an empty LAN, removed (with every host, veth and the
// bridge) when the test ends, failed or not. It skips the test where
// network namespaces cannot be made: not root, or no iproute2.
func NewLAN(t *testing.T) *LAN {
	t.Helper()
	l, err := netns.New()
	if errors.Is(err, netns.ErrUnavailable) {
		t.Skipf("the LAN harness cannot run here (make test runs as root in CI): %v", err)
	}
	noErr(t, err, "make a LAN")
	t.Cleanup(l.Close)
	return &LAN{LAN: l, t: t}
}

// AddHost plugs a new machine into the LAN, with the UTS host name given
// (several hosts may share one, as two laptops called "laptop" do).
func (l *LAN) AddHost(hostname string) *Host {
	l.t.Helper()
	h, err := l.LAN.AddHost(hostname)
	noErr(l.t, err, "add host %s", hostname)
	return &Host{Host: h, lan: l}
}

// Unplug takes the host's cable out (netns.Host.Unplug).
func (h *Host) Unplug() {
	h.lan.t.Helper()
	noErr(h.lan.t, h.Host.Unplug(), "unplug %s", h.NS)
}

// Plug puts the cable back.
func (h *Host) Plug() {
	h.lan.t.Helper()
	noErr(h.lan.t, h.Host.Plug(), "plug %s", h.NS)
}

// Readdress moves the host to another address on the LAN (its last
// octet), as a laptop that changed networks or woke up with a new lease.
func (h *Host) Readdress(octet int) {
	h.lan.t.Helper()
	noErr(h.lan.t, h.Host.Readdress(octet), "readdress %s", h.NS)
}

// Daemon prepares (without starting) a hearth daemon on this host on a
// fresh data dir: `hearth run --data-dir DIR` and the extra flags, in the
// host's namespace and under its host name, with no other flag. Its client
// API is the default 127.0.0.1:8008 inside the namespace. t.Cleanup stops
// it (failing the test unless it exits cleanly).
func (h *Host) Daemon(extra ...string) *Daemon {
	h.lan.t.Helper()
	d := NewDaemon(h.lan.t, h.lan.t.TempDir())
	d.Bare = true
	d.Extra = extra
	d.Addr = "127.0.0.1:8008"
	d.Dial = h.DialContext
	d.Wrap = h.wrap
	return d
}

// wrap runs argv in the host under its host name, without a session bus
// (netns.Host.Wrap), its runtime dir in the test's temp dir.
func (h *Host) wrap(argv []string) []string { return h.Wrap(argv, h.lan.t.TempDir()) }

// Exec runs a command inside the host's namespace and returns its
// combined output, failing the test on error.
func (h *Host) Exec(args ...string) string {
	h.lan.t.Helper()
	out, err := h.Host.Exec(args...)
	noErr(h.lan.t, err, "exec")
	return out
}

// StartAll starts daemons at once (a LAN's machines boot together; it
// also keeps the tests quick) and returns when all are ready.
func StartAll(t *testing.T, ds ...*Daemon) {
	t.Helper()
	var wg sync.WaitGroup
	for _, d := range ds {
		wg.Go(d.Start) // a failed start marks the test failed and ends only its goroutine
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

// nearbyPeer is one entry of `hearth peers --json`.
type nearbyPeer struct {
	ServerName string   `json:"server_name"`
	Addresses  []string `json:"addresses"`
	Port       int      `json:"port"`
	KeyID      string   `json:"key_id"`
	Key        string   `json:"key"`
	KeyChanged bool     `json:"key_changed"`
	KeyRefused bool     `json:"key_refused"`
	TLSKey     string   `json:"tls_key"`
	Route      string   `json:"route"`
}

// Peers is what `hearth peers --json` says the daemon sees, through its
// control socket. It fails the test if discovery is off.
func Peers(t testing.TB, d *Daemon) []nearbyPeer {
	t.Helper()
	code, out, errOut := runHearth(t, "peers", "--json", "--data-dir", d.DataDir)
	if code != 0 {
		t.Fatalf("hearth peers on %s: exit %d: %s", d.DataDir, code, errOut)
	}
	var st struct {
		Enabled bool         `json:"enabled"`
		Peers   []nearbyPeer `json:"peers"`
	}
	noErr(t, json.Unmarshal([]byte(out), &st), "hearth peers --json: %s", out)
	if !st.Enabled {
		t.Fatalf("%s: LAN discovery is not enabled: %s", d.DataDir, out)
	}
	return st.Peers
}

// WaitPeers polls `hearth peers` until pred accepts the list, and returns
// it with the time waited. It fails after deadline.
func WaitPeers(t testing.TB, d *Daemon, deadline time.Duration, what string, pred func([]nearbyPeer) bool) ([]nearbyPeer, time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		ps := Peers(t, d)
		if pred(ps) {
			return ps, time.Since(start)
		}
		if time.Since(start) > deadline {
			t.Fatalf("%s (%s): not within %v; it lists %+v", what, d.ServerName(), deadline, ps)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// peerNames lists the server names in a peer list, sorted.
func peerNames(ps []nearbyPeer) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.ServerName)
	}
	slices.Sort(out)
	return out
}

var (
	readyLine  = regexp.MustCompile(`hearth is ready.*`)
	lineKeyID  = regexp.MustCompile(`key_id=(ed25519:\S+)`)
	lineName   = regexp.MustCompile(`server_name=(\S+)`)
	bannerUser = regexp.MustCompile(`(?m)^\s+user\s+(@\S+)$`)
	bannerPass = regexp.MustCompile(`(?m)^\s+password\s+(\S+)$`)
)

// Ready returns the server name and key ID of the daemon's latest "hearth
// is ready" log line: with default settings the test does not choose them.
func Ready(t testing.TB, d *Daemon) (serverName, keyID string) {
	t.Helper()
	lines := readyLine.FindAllString(d.Logs(), -1)
	if len(lines) == 0 {
		t.Fatalf("%s logged no ready line:\n%s", d.DataDir, d.Logs())
	}
	last := lines[len(lines)-1]
	k, n := lineKeyID.FindStringSubmatch(last), lineName.FindStringSubmatch(last)
	if k == nil || n == nil {
		t.Fatalf("ready line without server_name and key_id: %s", last)
	}
	return strings.Trim(n[1], `"`), k[1]
}

// Owner returns the owner account that the first start made and printed
// in its welcome banner (user and password), the way a person would.
func Owner(t testing.TB, d *Daemon) (userID, password string) {
	t.Helper()
	u, p := bannerUser.FindStringSubmatch(d.Logs()), bannerPass.FindStringSubmatch(d.Logs())
	if u == nil || p == nil {
		t.Fatalf("%s printed no welcome banner with user and password:\n%s", d.DataDir, d.Logs())
	}
	return u[1], p[1]
}

// Account creates a local account on a running daemon the way its owner
// would, with `hearth account add` through the control socket (so the
// daemon needs no open registration), and logs it in through the
// namespace with the harness's password for name.
func Account(t testing.TB, d *Daemon, name string) *mautrix.Client {
	t.Helper()
	code, out, errOut := runHearth(t, "account", "add", name, "--password", Password(name), "--data-dir", d.DataDir)
	if code != 0 {
		t.Fatalf("hearth account add %s: exit %d: %s%s", name, code, out, errOut)
	}
	return d.Login(name)
}

// TCPTrap is a listener on a host that accepts connections, counts them
// and closes them: where an impersonator's federation port would be, to
// prove that nothing is sent to it.
type TCPTrap struct {
	ln    net.Listener
	conns atomic.Int64
}

// TrapTCP listens on port on every address of the host until the test
// ends.
func (h *Host) TrapTCP(t testing.TB, port int) *TCPTrap {
	t.Helper()
	tr := &TCPTrap{}
	err := h.Do(func() (err error) {
		tr.ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	})
	noErr(t, err, "listen on %d in %s", port, h.NS)
	t.Cleanup(func() { tr.ln.Close() })
	go func() {
		for {
			c, err := tr.ln.Accept()
			if err != nil {
				return
			}
			tr.conns.Add(1)
			c.Close()
		}
	}()
	return tr
}

// Conns is the number of connections accepted so far.
func (tr *TCPTrap) Conns() int64 { return tr.conns.Load() }
