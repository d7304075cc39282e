package turn

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// bucket is a token bucket of bytes: rate a second, at most burst saved.
// A packet that does not fit is dropped, not delayed: the relay's read
// loop serves every client, and late media is worse than lost media.
type bucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rate int64) *bucket {
	if rate <= 0 {
		return nil
	}
	return &bucket{rate: float64(rate), burst: float64(rate), tokens: float64(rate)}
}

// take reports whether n bytes may pass at now.
func (b *bucket) take(n int, now time.Time) bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		b.tokens += now.Sub(b.last).Seconds() * b.rate
		if b.tokens > b.burst {
			b.tokens = b.burst
		}
	}
	b.last = now
	if b.tokens < float64(n) {
		return false
	}
	b.tokens -= float64(n)
	return true
}

// relayConn is one allocation's relayed socket: it counts against the
// allocation's bandwidth (both directions share one bucket) and checks
// every peer against the scope again (pion checks permissions; this is
// the second lock) and, for this machine's own addresses, that the port
// is another allocation's relay port, so a client cannot reach the
// machine's other UDP services through the relay.
type relayConn struct {
	net.PacketConn
	srv  *Server
	port int
	bw   *bucket

	mu      sync.Mutex
	checked map[netip.Addr]peerVerdict // by peer IP, so the checks (and the read of this machine's addresses) run once per peer
}

type peerVerdict struct{ allowed, own bool }

var errPeerRefused = errors.New("TURN relay: peer address refused")

func (c *relayConn) allowed(ap netip.AddrPort) bool {
	ip := ap.Addr().Unmap()
	c.mu.Lock()
	v, seen := c.checked[ip]
	c.mu.Unlock()
	if !seen {
		v.allowed = c.srv.cfg.Scope.PeerAllowed(ip)
		v.own = v.allowed && c.srv.ownAddress(ip)
		c.mu.Lock()
		if len(c.checked) > 1024 {
			clear(c.checked)
		}
		c.checked[ip] = v
		c.mu.Unlock()
	}
	if !v.allowed {
		return false
	}
	if v.own {
		return c.srv.isRelayPort(int(ap.Port()))
	}
	return true
}

func udpAddrPort(a net.Addr) netip.AddrPort {
	if u, ok := a.(*net.UDPAddr); ok {
		return u.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// WriteTo sends a client's data to a peer.
func (c *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if !c.allowed(udpAddrPort(addr)) {
		return 0, fmt.Errorf("%w: %s", errPeerRefused, addr)
	}
	if !c.bw.take(len(p), time.Now()) {
		c.srv.dropped.Add(1)
		return len(p), nil // dropped, as the network would
	}
	return c.PacketConn.WriteTo(p, addr)
}

// ReadFrom takes a peer's data for the client, dropping what comes from
// refused addresses or over the bandwidth.
func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil {
			return n, addr, err
		}
		if !c.allowed(udpAddrPort(addr)) {
			continue
		}
		if !c.bw.take(n, time.Now()) {
			c.srv.dropped.Add(1)
			continue
		}
		return n, addr, nil
	}
}

func (c *relayConn) Close() error {
	c.srv.releasePort(c.port)
	return c.PacketConn.Close()
}

// relayGenerator is pion's RelayAddressGenerator: UDP relays on the
// advertised address, no TCP relays (RFC 6062 is not offered; clients
// reach the server over TCP but relay over UDP).
type relayGenerator struct{ srv *Server }

func (g relayGenerator) Validate() error { return nil }

func (g relayGenerator) AllocatePacketConn(network string, requestedPort int) (net.PacketConn, net.Addr, error) {
	ip := g.srv.relayIP()
	pc, err := net.ListenPacket("udp4", net.JoinHostPort(ip.String(), fmt.Sprint(requestedPort)))
	if err != nil {
		return nil, nil, fmt.Errorf("TURN relay socket: %w", err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	g.srv.holdPort(port)
	rc := &relayConn{PacketConn: pc, srv: g.srv, port: port, bw: newBucket(g.srv.cfg.BandwidthBytes),
		checked: map[netip.Addr]peerVerdict{}}
	return rc, &net.UDPAddr{IP: ip.AsSlice(), Port: port}, nil
}

func (g relayGenerator) AllocateConn(string, int) (net.Conn, net.Addr, error) {
	return nil, nil, errors.New("TURN: TCP relays (RFC 6062) are not offered")
}
