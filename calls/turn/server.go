package turn

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v4"
)

// Defaults of the relay's limits.
const (
	DefaultPort           = 3478
	DefaultUserQuota      = 10
	DefaultTotalQuota     = 100
	DefaultBandwidthBytes = 512 << 10 // a video call needs well under 4 Mbit/s
)

// Config is the built-in relay's setting.
type Config struct {
	Secret []byte
	TTL    time.Duration // of the credentials; DefaultTTL when zero
	Realm  string        // the server name
	// Listen is host:port of the UDP and TCP listeners (the same port).
	// AnyPortIfTaken: when that port is taken, listen on a free one (the
	// default address in lan mode, like the federation listener).
	Listen         string
	AnyPortIfTaken bool
	// Avoid lists ports a free port must not be: the daemon's own
	// listeners' ports, which start after the relay and would otherwise
	// find a port freed by the daemon's last run taken by its own relay.
	Avoid          []int
	Scope          Scope
	UserQuota      int   // allocations per user at once; DefaultUserQuota when zero
	TotalQuota     int   // allocations at once; DefaultTotalQuota when zero
	BandwidthBytes int64 // per allocation, bytes a second both ways; DefaultBandwidthBytes when zero, <0 unlimited
	// Now is the clock (tests); time.Now when nil.
	Now func() time.Time
}

// Server is the running relay.
type Server struct {
	cfg    Config
	turn   *turn.Server
	udp    net.PacketConn
	tcp    net.Listener
	bindIP netip.Addr // the listen host, unspecified for every address
	port   int

	mu      sync.Mutex
	perUser map[string]int
	total   int
	ports   map[int]bool // relay ports of live allocations

	dropped atomic.Int64 // packets over the bandwidth cap
}

// Start opens the listeners and serves until Close.
func Start(cfg Config) (*Server, error) {
	if len(cfg.Secret) == 0 {
		return nil, errors.New("TURN: no secret")
	}
	if cfg.UserQuota == 0 {
		cfg.UserQuota = DefaultUserQuota
	}
	if cfg.TotalQuota == 0 {
		cfg.TotalQuota = DefaultTotalQuota
	}
	switch {
	case cfg.BandwidthBytes == 0:
		cfg.BandwidthBytes = DefaultBandwidthBytes
	case cfg.BandwidthBytes < 0:
		cfg.BandwidthBytes = 0
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	host, _, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("TURN listen address %q: %w", cfg.Listen, err)
	}
	s := &Server{cfg: cfg, perUser: map[string]int{}, ports: map[int]bool{}, bindIP: netip.IPv4Unspecified()}
	if host != "" {
		if s.bindIP, err = netip.ParseAddr(host); err != nil {
			return nil, fmt.Errorf("TURN listen address %q: the host must be an IP address", cfg.Listen)
		}
	}
	udp, tcp, err := listenPair(cfg.Listen)
	if err != nil && cfg.AnyPortIfTaken {
		slog.Warn("TURN: the port is taken; listening on another one", "addr", cfg.Listen, "err", err)
		udp, tcp, err = listenPair(net.JoinHostPort(host, "0"), cfg.Avoid...)
	}
	if err != nil {
		return nil, fmt.Errorf("TURN listener: %w", err)
	}
	s.udp, s.tcp = udp, tcp
	s.port = udp.LocalAddr().(*net.UDPAddr).Port
	gen := relayGenerator{srv: s}
	s.turn, err = turn.NewServer(turn.ServerConfig{
		Realm:         cfg.Realm,
		LoggerFactory: slogFactory{},
		AuthHandler:   s.auth,
		QuotaHandler:  s.quota,
		EventHandler: turn.EventHandler{
			OnAllocationCreated: s.created,
			OnAllocationDeleted: s.deleted,
		},
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn:            &admitPacketConn{PacketConn: udp, scope: cfg.Scope},
			RelayAddressGenerator: gen,
			PermissionHandler:     cfg.Scope.permissionHandler,
		}},
		ListenerConfigs: []turn.ListenerConfig{{
			Listener:              &admitListener{Listener: tcp, scope: cfg.Scope},
			RelayAddressGenerator: gen,
			PermissionHandler:     cfg.Scope.permissionHandler,
		}},
	})
	if err != nil {
		udp.Close()
		tcp.Close()
		return nil, fmt.Errorf("TURN server: %w", err)
	}
	return s, nil
}

// listenPair opens UDP and TCP on one port (for port 0, a port free in
// both and not one of avoid).
func listenPair(addr string, avoid ...int) (net.PacketConn, net.Listener, error) {
	host, port, _ := net.SplitHostPort(addr)
	for try := 0; ; try++ {
		udp, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		p := udp.LocalAddr().(*net.UDPAddr).Port
		if port == "0" && slices.Contains(avoid, p) {
			err = fmt.Errorf("port %d is reserved for another listener", p)
		} else {
			var tcp net.Listener
			if tcp, err = net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p))); err == nil {
				return udp, tcp, nil
			}
		}
		udp.Close()
		if port != "0" || try == 5 {
			return nil, nil, err
		}
	}
}

// Close stops the listeners; pion then closes every allocation.
func (s *Server) Close() error { return s.turn.Close() }

// Port is the port of the UDP and TCP listeners.
func (s *Server) Port() int { return s.port }

// Allocations is the number of live allocations.
func (s *Server) Allocations() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// Dropped is the number of packets dropped over the bandwidth cap.
func (s *Server) Dropped() int64 { return s.dropped.Load() }

// Credentials returns credentials for userID and the URIs of the relay as
// a client that reached this machine at host (an IP) can use: the
// listener's own address when it is bound to one, else host itself.
func (s *Server) Credentials(userID, host string) ([]string, Credentials) {
	if !s.bindIP.IsUnspecified() {
		host = s.bindIP.String()
	}
	return URIs(host, s.port), Issue(s.cfg.Secret, userID, s.cfg.Now(), s.cfg.TTL)
}

// ICEServers is what the call agent, running in this process, gives its
// WebRTC peer connections to use the relay as userID: loopback reaches the
// listener when it listens on every address.
func (s *Server) ICEServers(userID string) []ICEServer {
	host := "127.0.0.1"
	uris, c := s.Credentials(userID, host)
	return []ICEServer{{URLs: uris, Username: c.Username, Credential: c.Password}}
}

// URIs are the turn: URIs of a relay at host:port over UDP and TCP.
func URIs(host string, port int) []string {
	hp := net.JoinHostPort(host, strconv.Itoa(port))
	return []string{"turn:" + hp + "?transport=udp", "turn:" + hp + "?transport=tcp"}
}

// auth is pion's AuthHandler: the key of a username that is well formed,
// unexpired and for which the password is the HMAC of the secret. pion
// then checks the request's MESSAGE-INTEGRITY with it and its nonce.
func (s *Server) auth(username, realm string, src net.Addr) ([]byte, bool) {
	if _, err := ParseUsername(username, s.cfg.Now()); err != nil {
		slog.Debug("TURN: refused credentials", "from", src.String(), "err", err)
		return nil, false
	}
	return turn.GenerateAuthKey(username, realm, Password(s.cfg.Secret, username)), true
}

// quota is pion's QuotaHandler, asked before each allocation: per user and
// in total. Counts move on the created and deleted events; two
// allocations racing on two TCP connections may both pass at the edge.
func (s *Server) quota(username, _ string, _ net.Addr) bool {
	user, err := ParseUsername(username, s.cfg.Now())
	if err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.total >= s.cfg.TotalQuota || s.perUser[user] >= s.cfg.UserQuota {
		slog.Info("TURN: allocation quota reached", "user", user, "user_allocations", s.perUser[user], "allocations", s.total)
		return false
	}
	return true
}

func userOf(username string) string {
	_, user, _ := strings.Cut(username, ":")
	return user
}

func (s *Server) created(_, _ net.Addr, _, username, _ string, _ net.Addr, _ int) {
	s.mu.Lock()
	s.perUser[userOf(username)]++
	s.total++
	s.mu.Unlock()
}

func (s *Server) deleted(_, _ net.Addr, _, username, _ string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := userOf(username)
	if s.perUser[u] <= 1 {
		delete(s.perUser, u)
	} else {
		s.perUser[u]--
	}
	if s.total > 0 {
		s.total--
	}
}

func (s *Server) holdPort(p int) {
	s.mu.Lock()
	s.ports[p] = true
	s.mu.Unlock()
}

func (s *Server) releasePort(p int) {
	s.mu.Lock()
	delete(s.ports, p)
	s.mu.Unlock()
}

func (s *Server) isRelayPort(p int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ports[p]
}

// ownAddress reports whether ip is one of this machine's addresses.
func (s *Server) ownAddress(ip netip.Addr) bool {
	if ip.IsLoopback() || ip.IsUnspecified() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return true // cannot tell: treat as ours, the stricter rule
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if own, ok := netip.AddrFromSlice(n.IP); ok && own.Unmap() == ip {
				return true
			}
		}
	}
	return false
}

// relayIP is the address relays are bound to and advertised at: the
// listen address when it is one; else this machine's LAN address (the
// source address of its default route, or its first private IPv4
// address), read at each allocation so it follows network changes.
func (s *Server) relayIP() netip.Addr {
	if !s.bindIP.IsUnspecified() && s.bindIP.Is4() {
		return s.bindIP
	}
	return lanAddress()
}

func lanAddress() netip.Addr {
	// Dialling UDP sends nothing: it asks the kernel for the route.
	if c, err := net.Dial("udp4", "192.0.2.1:9"); err == nil {
		ip := addrIP(c.LocalAddr())
		c.Close()
		if ip.IsValid() && !ip.IsLoopback() {
			return ip
		}
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if ip = ip.Unmap(); ok && ip.Is4() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
			return ip
		}
	}
	return netip.AddrFrom4([4]byte{127, 0, 0, 1})
}

// admitPacketConn drops datagrams from clients outside the scope before
// pion parses them.
type admitPacketConn struct {
	net.PacketConn
	scope Scope
}

func (c *admitPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil || c.scope.ClientAllowed(addrIP(addr)) {
			return n, addr, err
		}
	}
}

// admitListener closes connections from clients outside the scope, and
// on Close the accepted ones too: pion leaves a TCP client's connection
// open after its listener closes, and a relay switched off must let go
// of everyone.
type admitListener struct {
	net.Listener
	scope Scope

	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

func (l *admitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if !l.scope.ClientAllowed(addrIP(c.RemoteAddr())) {
			c.Close()
			continue
		}
		tc := &trackedConn{Conn: c, l: l}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			c.Close()
			return nil, net.ErrClosed
		}
		if l.conns == nil {
			l.conns = map[*trackedConn]struct{}{}
		}
		l.conns[tc] = struct{}{}
		l.mu.Unlock()
		return tc, nil
	}
}

func (l *admitListener) Close() error {
	err := l.Listener.Close()
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()
	for c := range conns {
		c.Conn.Close()
	}
	return err
}

type trackedConn struct {
	net.Conn
	l *admitListener
}

func (c *trackedConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// slogFactory sends pion's warnings and errors to slog; its debug and
// trace lines (every refused request) are left out.
type slogFactory struct{}

func (slogFactory) NewLogger(scope string) logging.LeveledLogger {
	f := logging.DefaultLoggerFactory{Writer: slogWriter{}, DefaultLogLevel: logging.LogLevelWarn,
		ScopeLevels: map[string]logging.LogLevel{}}
	return f.NewLogger(scope)
}

type slogWriter struct{}

func (slogWriter) Write(p []byte) (int, error) {
	sc := bufio.NewScanner(bytes.NewReader(p))
	for sc.Scan() {
		slog.Warn("TURN: " + sc.Text())
	}
	return len(p), nil
}
