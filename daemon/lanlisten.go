package daemon

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// lanListener admits only connections from loopback and from the networks
// this machine has an address on: federation = lan. It wraps a listener
// on every interface rather than binding each interface's address,
// because those addresses come and go (Wi-Fi switch, DHCP renewal, sleep)
// and a listener bound to a vanished address would have to be rebuilt.
// The local networks are re-read when a connection comes from outside the
// ones known (at most once a second, so a flood of strangers costs one
// read a second) and when the known list is older than lanNetsMaxAge, so
// a network left behind stops being admitted soon after.
type lanListener struct {
	net.Listener
	localNets func() []netip.Prefix // net.InterfaceAddrs in production

	mu      sync.Mutex
	nets    []netip.Prefix
	read    time.Time // when nets was read
	refused time.Time // last refusal logged, to keep a flood out of the log
}

const (
	lanNetsMaxAge  = 30 * time.Second
	lanNetsReread  = time.Second // least time between two re-reads on a miss
	lanRefusedLogs = time.Minute // least time between two refusal log lines
)

func newLANListener(ln net.Listener, localNets func() []netip.Prefix) *lanListener {
	if localNets == nil {
		localNets = interfaceNets
	}
	return &lanListener{Listener: ln, localNets: localNets}
}

// Accept returns the next connection from loopback or a local network,
// closing the others unanswered.
func (l *lanListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.admits(c.RemoteAddr()) {
			return c, nil
		}
		c.Close()
	}
}

// admits reports whether addr may use the LAN federation listener.
func (l *lanListener) admits(addr net.Addr) bool {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap().WithZone("") // a link-local peer arrives with its zone; prefixes have none
	if ip.IsLoopback() {
		return true
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.read) > lanNetsMaxAge {
		l.nets, l.read = l.localNets(), now
	}
	if onNets(ip, l.nets) {
		return true
	}
	if now.Sub(l.read) >= lanNetsReread {
		l.nets, l.read = l.localNets(), now
		if onNets(ip, l.nets) {
			return true
		}
	}
	if now.Sub(l.refused) >= lanRefusedLogs {
		l.refused = now
		slog.Info("federation = lan: refused a connection from outside this machine's networks (further ones are not logged for a minute)",
			"remote", ip.String())
	}
	return false
}

func onNets(ip netip.Addr, nets []netip.Prefix) bool {
	for _, p := range nets {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// interfaceNets is the networks of this machine's interface addresses
// (192.168.1.23/24 gives 192.168.1.0/24). Loopback is admitted anyway.
func interfaceNets() []netip.Prefix {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		slog.Warn("federation = lan: cannot read this machine's addresses; only loopback is admitted", "err", err)
		return nil
	}
	return localPrefixes(addrs)
}

// localPrefixes turns interface addresses into their networks, leaving
// out any prefix so wide it would span much of the internet (a /0 on a
// misconfigured interface, say).
func localPrefixes(addrs []net.Addr) []netip.Prefix {
	var out []netip.Prefix
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		ones, _ := ipn.Mask.Size()
		if ip.Is4() && len(ipn.Mask) == net.IPv6len {
			ones -= 96
		}
		if ones < minLANPrefix(ip) {
			continue
		}
		out = append(out, netip.PrefixFrom(ip, ones).Masked())
	}
	return out
}

// minLANPrefix is the shortest prefix taken as a local network: /8 for
// IPv4 (10.0.0.0/8 is a LAN), /48 for IPv6 (a site).
func minLANPrefix(ip netip.Addr) int {
	if ip.Is4() {
		return 8
	}
	return 48
}
