// Package discovery finds other Hearth daemons on the local network over
// mDNS/DNS-SD (RFC 6762, RFC 6763) and announces this one: "people
// nearby". It owns the peer table and the trust-on-first-use pins of their
// signing keys (bucket lanpins), and nothing else: the daemon routes
// federation to verified peers through the OnChange observer, and the
// control API reads Peers.
package discovery

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/grandcat/zeroconf"

	"github.com/hearth-chat/hearth/internal/store"
)

// The DNS-SD service this package announces and browses.
const (
	ServiceType = "_hearth._tcp"
	Domain      = "local."
)

// Browse timing. zeroconf v1.0.0 reports each instance once per browse
// and stops querying after the first answer, so a browse that ran forever
// would never refresh a peer; instead each round is a fresh browse (one
// multicast query; every daemon answers it). A peer is dropped when it has
// missed two rounds in a row (PeerTTL > 2 rounds): one lost UDP packet, as
// on Wi-Fi, does not make a neighbour blink out. zeroconf drops goodbye
// packets (TTL 0) inside its browse loop without reporting them, so a
// stopped daemon also disappears by this expiry, within PeerTTL plus a
// sweep.
const (
	BrowseRound = 10 * time.Second
	PeerTTL     = 25 * time.Second
)

// Config is what the service needs to know about this server.
type Config struct {
	ServerName string
	KeyID      string            // ed25519:<id> of the current signing key
	Key        ed25519.PublicKey // its public half
	DB         *store.DB         // for the lanpins bucket
	// Advertise is the federation listener's address; empty browses only.
	// A loopback listener is not advertised: no one else could reach it.
	Advertise string
}

// Service announces this server and keeps the table of the others.
type Service struct {
	cfg   Config
	table *table
	local func() []*net.IPNet // this machine's networks, to pick a route

	// What to announce, from cfg.Advertise (set by Start).
	announce bool
	port     int
	ip       net.IP // nil: every interface

	mu          sync.Mutex
	observers   []func(p Peer, gone bool)
	server      *zeroconf.Server
	announcedOn string // the local networks when server was registered
	warned      bool   // announcing failed and was logged
	cancel      context.CancelFunc
	done        chan struct{}
}

// New returns a service that has not started.
func New(cfg Config) *Service {
	return &Service{cfg: cfg, table: newTable(cfg.DB, cfg.ServerName, PeerTTL), local: localNets}
}

// OnChange registers fn, called when a verified peer appears or changes
// address (gone false) and when it expires or announces another key (gone
// true). Calls come from one goroutine, in order, without locks held.
func (s *Service) OnChange(fn func(p Peer, gone bool)) {
	s.mu.Lock()
	s.observers = append(s.observers, fn)
	s.mu.Unlock()
}

// Peers returns the peers currently on the network, by server name.
func (s *Service) Peers() []Peer { return s.table.list() }

// Route is the "ip:port" to dial for a peer, preferring an address in
// one of this machine's networks.
func (s *Service) Route(p Peer) string { return p.Route(s.local()) }

// Start announces this server (if cfg.Advertise is set) and starts
// browsing. Only a malformed cfg.Advertise is an error: announcing and
// browsing are retried every round, since on a laptop networks come and
// go, and the announcement is renewed when the local addresses change.
func (s *Service) Start() error {
	if err := s.parseAdvertise(); err != nil {
		return err
	}
	s.keepAnnounced()
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go func() {
		defer close(s.done)
		s.browse(ctx)
	}()
	return nil
}

// Stop ends browsing and withdraws the announcement (a goodbye packet).
func (s *Service) Stop() {
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
	s.mu.Lock()
	srv := s.server
	s.server = nil
	s.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
	}
}

func (s *Service) parseAdvertise() error {
	if s.cfg.Advertise == "" {
		return nil
	}
	host, portStr, err := net.SplitHostPort(s.cfg.Advertise)
	if err == nil {
		s.port, err = net.LookupPort("tcp", portStr)
	}
	if err != nil {
		return fmt.Errorf("discovery: advertise %q: %w", s.cfg.Advertise, err)
	}
	s.ip = net.ParseIP(host)
	if host == "localhost" || (s.ip != nil && s.ip.IsLoopback()) {
		slog.Info("LAN discovery: federation listens on loopback only; browsing without announcing this server", "listen", s.cfg.Advertise)
		return nil
	}
	if s.ip != nil && s.ip.IsUnspecified() {
		s.ip = nil
	}
	s.announce = true
	return nil
}

// keepAnnounced registers the announcement if it is not, or again if the
// local networks changed since (zeroconf fixes the addresses and
// interfaces at registration).
func (s *Service) keepAnnounced() {
	if !s.announce {
		return
	}
	nets := fmt.Sprint(s.local())
	s.mu.Lock()
	old, same := s.server, s.server != nil && s.announcedOn == nets
	s.mu.Unlock()
	if same {
		return
	}
	if old != nil {
		old.Shutdown()
	}
	txt := txtRecords(s.cfg.ServerName, s.cfg.KeyID, s.cfg.Key)
	var srv *zeroconf.Server
	var err error
	if s.ip == nil {
		// Every interface: zeroconf announces each one's addresses.
		srv, err = zeroconf.Register(s.cfg.ServerName, ServiceType, Domain, s.port, txt, nil)
	} else {
		// One address: announce only it, the one that accepts connections.
		hostname, _ := os.Hostname()
		if hostname == "" {
			hostname = "hearth"
		}
		srv, err = zeroconf.RegisterProxy(s.cfg.ServerName, ServiceType, Domain, s.port, hostname, []string{s.ip.String()}, txt, nil)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.server, s.announcedOn = srv, nets
	switch {
	case err != nil && !s.warned:
		slog.Warn("LAN discovery: cannot announce this server; trying again every round", "err", err)
		s.warned = true
	case err == nil:
		slog.Info("LAN discovery: announcing this server", "service", ServiceType, "port", s.port)
		s.warned = false
	}
}

// browse runs one browse round after another until ctx ends.
func (s *Service) browse(ctx context.Context) {
	warned := false
	for ctx.Err() == nil {
		s.keepAnnounced()
		err := s.round(ctx)
		switch {
		case err != nil && !warned:
			slog.Warn("LAN discovery: cannot browse the local network; trying again every round", "err", err)
			warned = true
		case err == nil && warned:
			slog.Info("LAN discovery: browsing the local network again")
			warned = false
		}
	}
}

// round is one browse: it records every answer and sweeps expired peers
// until BrowseRound has passed.
func (s *Service) round(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, BrowseRound)
	defer cancel()
	defer func() { s.apply(s.table.expire(time.Now())) }()
	entries := make(chan *zeroconf.ServiceEntry)
	r, err := zeroconf.NewResolver()
	if err == nil {
		err = r.Browse(rctx, ServiceType, Domain, entries)
		if err != nil {
			for range entries { // its loop ends and closes entries
			}
		}
	}
	if err != nil {
		<-rctx.Done()
		return err
	}
	sweep := time.NewTicker(BrowseRound / 2)
	defer sweep.Stop()
	for {
		select {
		case e, ok := <-entries:
			if !ok {
				<-rctx.Done()
				return nil
			}
			s.handle(ctx, e)
		case now := <-sweep.C:
			s.apply(s.table.expire(now))
		}
	}
}

// handle records one answer.
func (s *Service) handle(ctx context.Context, e *zeroconf.ServiceEntry) {
	a, err := parseTXT(e.Text)
	if err != nil {
		slog.Debug("LAN discovery: ignoring an announcement", "instance", e.Instance, "err", err)
		return
	}
	a.port = e.Port
	for _, ip := range e.AddrIPv4 {
		a.addrs = append(a.addrs, ip.String())
	}
	for _, ip := range e.AddrIPv6 {
		a.addrs = append(a.addrs, ip.String())
	}
	a.addrs = slices.Compact(a.addrs)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	changes, err := s.table.observe(wctx, a, time.Now())
	if err != nil && !errors.Is(err, context.Canceled) {
		slog.Warn("LAN discovery", "err", err)
	}
	s.apply(changes)
}

func (s *Service) apply(changes []Change) {
	if len(changes) == 0 {
		return
	}
	s.mu.Lock()
	obs := slices.Clone(s.observers)
	s.mu.Unlock()
	for _, c := range changes {
		for _, fn := range obs {
			fn(c.Peer, c.Gone)
		}
	}
}

// localNets lists the networks of this machine's interfaces.
func localNets() []*net.IPNet {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []*net.IPNet
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() {
			out = append(out, n)
		}
	}
	return out
}
