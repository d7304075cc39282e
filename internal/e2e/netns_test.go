package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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

// lanSubnet is every test LAN's /24. Each LAN lives inside its own switch
// namespace, so parallel tests (and parallel `go test` runs) reuse it
// without meeting.
const lanSubnet = "10.47.0."

// lanPrefix starts the name of every namespace this harness makes; the
// pid of the test process follows, so leftovers of a killed run can be
// recognised and removed (sweepStaleLANs).
const lanPrefix = "hlan"

var lanSeq atomic.Int64

// LAN is a bridge in a switch namespace and the hosts plugged into it.
type LAN struct {
	t     *testing.T
	id    string // unique in this machine: lanPrefix, pid, sequence
	sw    string // the switch namespace, holding bridge br0
	mu    sync.Mutex
	hosts []*Host
}

// Host is one machine on a LAN: a network namespace with veth eth0 in
// the bridge.
type Host struct {
	lan      *LAN
	Index    int
	NS       string // network namespace name (ip netns)
	Hostname string // its UTS host name: what os.Hostname says to hearth
	IP       string // eth0's address
	port     string // the bridge side of its veth, in the switch namespace
	nsfd     *os.File
}

// NewLAN makes an empty LAN, removed (with every host, veth and the
// bridge) when the test ends, failed or not. It skips the test where
// network namespaces cannot be made: not root, or no iproute2.
func NewLAN(t *testing.T) *LAN {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the LAN harness needs Linux network namespaces")
	}
	if os.Geteuid() != 0 {
		t.Skip("the LAN harness needs root to make network namespaces (make test runs as root in CI)")
	}
	for _, tool := range []string{"ip", "unshare", "sh"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the LAN harness needs %s (apt-get install iproute2 util-linux): %v", tool, err)
		}
	}
	sweepStaleLANs()
	l := &LAN{t: t, id: fmt.Sprintf("%s%d-%d", lanPrefix, os.Getpid(), lanSeq.Add(1))}
	l.sw = l.id + "-sw"
	if out, err := exec.Command("ip", "netns", "add", l.sw).CombinedOutput(); err != nil {
		t.Skipf("cannot make a network namespace here: ip netns add: %v: %s", err, out)
	}
	// Deleting a namespace deletes its interfaces, and a veth's end goes
	// with its peer: removing the namespaces removes everything.
	t.Cleanup(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, h := range l.hosts {
			h.nsfd.Close()
			exec.Command("ip", "netns", "del", h.NS).Run()
		}
		exec.Command("ip", "netns", "del", l.sw).Run()
	})
	l.ip("-n", l.sw, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	l.ip("-n", l.sw, "link", "set", "br0", "up")
	return l
}

// sweepStaleLANs removes namespaces left by test processes that are gone
// (a killed `go test` runs no cleanup).
func sweepStaleLANs() {
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), lanPrefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			exec.Command("ip", "netns", "del", e.Name()).Run()
		}
	}
}

// ip runs iproute2 and fails the test on error.
func (l *LAN) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// AddHost plugs a new machine into the LAN, with the UTS host name given
// (several hosts may share one, as two laptops called "laptop" do).
func (l *LAN) AddHost(hostname string) *Host {
	l.t.Helper()
	l.mu.Lock()
	i := len(l.hosts)
	h := &Host{lan: l, Index: i, NS: fmt.Sprintf("%s-h%d", l.id, i), Hostname: hostname,
		IP: fmt.Sprintf("%s%d", lanSubnet, i+1), port: fmt.Sprintf("p%d", i)}
	l.hosts = append(l.hosts, h)
	l.mu.Unlock()
	if i >= 250 {
		l.t.Fatal("AddHost: the /24 is full")
	}
	l.ip("netns", "add", h.NS)
	f, err := os.Open(filepath.Join("/run/netns", h.NS))
	noErr(l.t, err, "open namespace %s", h.NS)
	h.nsfd = f
	l.ip("-n", l.sw, "link", "add", h.port, "type", "veth", "peer", "name", "eth0", "netns", h.NS)
	l.ip("-n", l.sw, "link", "set", h.port, "master", "br0", "up")
	l.ip("-n", h.NS, "addr", "add", h.IP+"/24", "dev", "eth0")
	// mDNS is multicast: on by default on a veth, set here so the harness
	// does not depend on that.
	l.ip("-n", h.NS, "link", "set", "eth0", "multicast", "on", "up")
	l.ip("-n", h.NS, "link", "set", "lo", "up")
	return h
}

// Unplug takes the host's cable out: the bridge side of its veth goes
// down, so the host keeps its address but loses carrier, as when a cable
// is pulled or Wi-Fi drops.
func (h *Host) Unplug() { h.lan.ip("-n", h.lan.sw, "link", "set", h.port, "down") }

// Plug puts the cable back.
func (h *Host) Plug() { h.lan.ip("-n", h.lan.sw, "link", "set", h.port, "up") }

// Do runs fn on an OS thread moved into the host's network namespace. A
// socket stays in the namespace it was made in, so fn may open sockets
// and return them for use anywhere. The thread is moved back afterwards,
// or, if that fails, left locked so that it dies with its goroutine
// instead of serving other goroutines from the wrong namespace.
func (h *Host) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			errc <- fmt.Errorf("this thread's network namespace: %w", err)
			return
		}
		defer home.Close()
		if err := unix.Setns(int(h.nsfd.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", h.NS, err)
			return
		}
		err = fn()
		if unix.Setns(int(home.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// Readdress moves the host to another address on the LAN (its last
// octet), as a laptop that changed networks or woke up with a new lease.
func (h *Host) Readdress(octet int) {
	h.lan.t.Helper()
	ip := fmt.Sprintf("%s%d", lanSubnet, octet)
	// Old first: deleting a primary address deletes the secondaries of its
	// subnet with it.
	h.lan.ip("-n", h.NS, "addr", "del", h.IP+"/24", "dev", "eth0")
	h.lan.ip("-n", h.NS, "addr", "add", ip+"/24", "dev", "eth0")
	h.IP = ip
}

// DialContext opens a connection from inside the host's namespace: the
// Dial of the host's daemons, so the test's clients reach 127.0.0.1:8008
// of the host.
func (h *Host) DialContext(ctx context.Context, network, addr string) (c net.Conn, err error) {
	err = h.Do(func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
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

// wrap runs argv in the host: its network namespace (ip netns exec), a UTS
// namespace of its own with its host name (unshare --uts; the host name
// must be set from inside it), and an environment without a session bus,
// so that key_store = auto finds no OS keyring, as on a fresh machine
// without one, and never writes test keys into the developer's. Every
// step execs the next, so the process started is hearth itself and
// signals reach it.
func (h *Host) wrap(argv []string) []string {
	return append([]string{"ip", "netns", "exec", h.NS, "unshare", "--uts", "--",
		"env", "-u", "DBUS_SESSION_BUS_ADDRESS", "-u", "DISPLAY", "-u", "WAYLAND_DISPLAY",
		"XDG_RUNTIME_DIR=" + h.lan.t.TempDir(),
		"sh", "-c", `hostname "$0" && exec "$@"`, h.Hostname}, argv...)
}

// Exec runs a command inside the host's namespace and returns its
// combined output, failing the test on error.
func (h *Host) Exec(args ...string) string {
	h.lan.t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", h.NS}, args...)...).CombinedOutput()
	noErr(h.lan.t, err, "in %s: %s: %s", h.NS, strings.Join(args, " "), out)
	return string(out)
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
