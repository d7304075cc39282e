// Package netns is a LAN of network namespaces for tests and the bench;
// Linux, root.
//
// A switch namespace holds a bridge; each host is a namespace with one veth
// into that bridge, an address on one /24, loopback, multicast, and nothing
// else: no default route, no way to the machine running the program or the
// internet. Programs run inside a host through Wrap (its network namespace
// and a UTS namespace with its own host name); the caller reaches sockets
// inside a host through DialContext or Do, which open them in the host's
// namespace. The internal/e2e harness and cmd/hearth-bench's lan section
// both build their LANs here.
package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Subnet is every LAN's /24. Each LAN lives inside its own switch
// namespace, so parallel LANs (and parallel processes) reuse it without
// meeting.
const Subnet = "10.47.0."

// prefix starts the name of every namespace this package makes; the pid
// of the process follows, so leftovers of a killed run can be recognised
// and removed (sweepStale).
const prefix = "hlan"

var seq atomic.Int64

// ErrUnavailable is wrapped by New's error when namespaces cannot be made
// here (not Linux, not root, no iproute2, no bridges): callers skip rather
// than fail.
var ErrUnavailable = errors.New("network namespaces unavailable")

// LAN is a bridge in a switch namespace and the hosts plugged into it.
type LAN struct {
	id     string // unique in this machine: prefix, pid, sequence
	sw     string // the switch namespace, holding bridge br0
	subnet string // the /24's first three octets and a dot: Subnet unless NewSubnet
	mu     sync.Mutex
	hosts  []*Host
	legs   int // hosts of other LANs plugged in too (AddLeg)
}

// Host is one machine on a LAN: a network namespace with veth eth0 in the
// bridge.
type Host struct {
	lan      *LAN
	Index    int
	NS       string // network namespace name (ip netns)
	Hostname string // its UTS host name, for programs run through Wrap
	IP       string // eth0's address
	port     string // the bridge side of its veth, in the switch namespace
	nsfd     *os.File
	legs     int // interfaces after eth0 (LAN.AddLeg)
}

// New makes an empty LAN. Close removes it with every host, veth and the
// bridge. The error wraps ErrUnavailable where namespaces cannot be made.
func New() (*LAN, error) { return NewSubnet(Subnet) }

// NewSubnet makes an empty LAN on another /24 (subnet like "10.48.0."),
// for a host on two LANs at once (AddLeg): the two must not share one.
func NewSubnet(subnet string) (*LAN, error) {
	if runtime.GOOS != "linux" {
		return nil, fmt.Errorf("%w: needs Linux", ErrUnavailable)
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: needs root", ErrUnavailable)
	}
	for _, tool := range []string{"ip", "unshare", "sh"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%w: needs %s (apt-get install iproute2 util-linux): %v", ErrUnavailable, tool, err)
		}
	}
	sweepStale()
	l := &LAN{id: fmt.Sprintf("%s%d-%d", prefix, os.Getpid(), seq.Add(1)), subnet: subnet}
	l.sw = l.id + "-sw"
	if out, err := exec.Command("ip", "netns", "add", l.sw).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%w: ip netns add: %v: %s", ErrUnavailable, err, out)
	}
	// mcast_snooping off: the bridge floods mDNS to every port whatever
	// IGMP it has (not) seen, as a home switch does.
	if err := ip("-n", l.sw, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"); err != nil {
		l.Close()
		return nil, fmt.Errorf("%w: no bridge: %v", ErrUnavailable, err)
	}
	if err := ip("-n", l.sw, "link", "set", "br0", "up"); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// Close removes every namespace of the LAN. Deleting a namespace deletes
// its interfaces, and a veth's end goes with its peer.
func (l *LAN) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range l.hosts {
		h.nsfd.Close()
		exec.Command("ip", "netns", "del", h.NS).Run()
	}
	l.hosts = nil
	exec.Command("ip", "netns", "del", l.sw).Run()
}

// sweepStale removes namespaces left by processes that are gone (a killed
// run does no cleanup).
func sweepStale() {
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
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

// ip runs iproute2.
func ip(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// AddHost plugs a new machine into the LAN, with the UTS host name given
// (several hosts may share one, as two laptops called "laptop" do).
func (l *LAN) AddHost(hostname string) (*Host, error) {
	l.mu.Lock()
	i := len(l.hosts)
	if i >= 250 {
		l.mu.Unlock()
		return nil, errors.New("AddHost: the /24 is full")
	}
	h := &Host{lan: l, Index: i, NS: fmt.Sprintf("%s-h%d", l.id, i), Hostname: hostname,
		IP: fmt.Sprintf("%s%d", l.subnet, i+1), port: fmt.Sprintf("p%d", i)}
	if err := ip("netns", "add", h.NS); err != nil {
		l.mu.Unlock()
		return nil, err
	}
	f, err := os.Open(filepath.Join("/run/netns", h.NS))
	if err != nil {
		exec.Command("ip", "netns", "del", h.NS).Run()
		l.mu.Unlock()
		return nil, fmt.Errorf("open namespace %s: %w", h.NS, err)
	}
	h.nsfd = f
	l.hosts = append(l.hosts, h) // from here Close removes it
	l.mu.Unlock()
	for _, args := range [][]string{
		{"-n", l.sw, "link", "add", h.port, "type", "veth", "peer", "name", "eth0", "netns", h.NS},
		{"-n", l.sw, "link", "set", h.port, "master", "br0", "up"},
		{"-n", h.NS, "addr", "add", h.IP + "/24", "dev", "eth0"},
		// mDNS is multicast: on by default on a veth, set here so that
		// nothing depends on that.
		{"-n", h.NS, "link", "set", "eth0", "multicast", "on", "up"},
		{"-n", h.NS, "link", "set", "lo", "up"},
	} {
		if err := ip(args...); err != nil {
			return nil, fmt.Errorf("host %s: %w", h.NS, err)
		}
	}
	return h, nil
}

// AddLeg plugs a host of another LAN into this one too: a second veth
// (eth1, eth2, …) into this LAN's bridge, with an address on this LAN's
// subnet counted down from .254, which it returns. The host then sits on
// both LANs, as a machine with Wi-Fi and Ethernet; it does not forward
// between them, so hosts of the two LANs reach it but not each other.
// The leg goes when this LAN closes (its bridge side with the switch).
func (l *LAN) AddLeg(h *Host) (string, error) {
	l.mu.Lock()
	l.legs++
	n := l.legs
	l.mu.Unlock()
	h.legs++
	dev, port := fmt.Sprintf("eth%d", h.legs), fmt.Sprintf("q%d", n)
	addr := fmt.Sprintf("%s%d", l.subnet, 255-n)
	for _, args := range [][]string{
		{"-n", l.sw, "link", "add", port, "type", "veth", "peer", "name", dev, "netns", h.NS},
		{"-n", l.sw, "link", "set", port, "master", "br0", "up"},
		{"-n", h.NS, "addr", "add", addr + "/24", "dev", dev},
		{"-n", h.NS, "link", "set", dev, "multicast", "on", "up"},
	} {
		if err := ip(args...); err != nil {
			return "", fmt.Errorf("leg of %s: %w", h.NS, err)
		}
	}
	return addr, nil
}

// Unplug takes the host's cable out: the bridge side of its veth goes
// down, so the host keeps its address but loses carrier, as when a cable
// is pulled or Wi-Fi drops.
func (h *Host) Unplug() error { return ip("-n", h.lan.sw, "link", "set", h.port, "down") }

// Plug puts the cable back.
func (h *Host) Plug() error { return ip("-n", h.lan.sw, "link", "set", h.port, "up") }

// Readdress moves the host to another address on the LAN (its last
// octet), as a laptop that changed networks or woke up with a new lease.
func (h *Host) Readdress(octet int) error {
	addr := fmt.Sprintf("%s%d", h.lan.subnet, octet)
	// Old first: deleting a primary address deletes the secondaries of its
	// subnet with it.
	if err := ip("-n", h.NS, "addr", "del", h.IP+"/24", "dev", "eth0"); err != nil {
		return err
	}
	if err := ip("-n", h.NS, "addr", "add", addr+"/24", "dev", "eth0"); err != nil {
		return err
	}
	h.IP = addr
	return nil
}

// Do runs fn on an OS thread moved into the host's network namespace. A
// socket stays in the namespace it was made in, so fn may open sockets and
// return them for use anywhere. The thread is moved back afterwards, or,
// if that fails, left locked so that it dies with its goroutine instead of
// serving other goroutines from the wrong namespace.
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

// DialContext opens a connection from inside the host's namespace, e.g.
// to a daemon's 127.0.0.1:8008 there.
func (h *Host) DialContext(ctx context.Context, network, addr string) (c net.Conn, err error) {
	err = h.Do(func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Wrap returns argv run in the host: its network namespace (ip netns
// exec), a UTS namespace of its own with its host name (unshare --uts; the
// host name must be set from inside it), and an environment without a
// session bus or display, with XDG_RUNTIME_DIR set to runtimeDir, so that
// a hearth finds no OS keyring, as on a fresh machine without one, and
// never writes keys into the caller's. Every step execs the next, so the
// process started is argv[0] itself and signals reach it.
func (h *Host) Wrap(argv []string, runtimeDir string) []string {
	return append([]string{"ip", "netns", "exec", h.NS, "unshare", "--uts", "--",
		"env", "-u", "DBUS_SESSION_BUS_ADDRESS", "-u", "DISPLAY", "-u", "WAYLAND_DISPLAY",
		"XDG_RUNTIME_DIR=" + runtimeDir,
		"sh", "-c", `hostname "$0" && exec "$@"`, h.Hostname}, argv...)
}

// Exec runs a command inside the host's network namespace and returns its
// combined output.
func (h *Host) Exec(args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", h.NS}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in %s: %s: %w: %s", h.NS, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}
