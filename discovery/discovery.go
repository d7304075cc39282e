// Package discovery finds other Hearth daemons on the local network over
// mDNS/DNS-SD (RFC 6762, RFC 6763) and announces this one: "people
// nearby". It owns its small mDNS responder and browser, the peer table
// and the trust-on-first-use pins of the peers' signing keys (bucket
// lanpins), and nothing else: the daemon routes federation to verified
// peers through the OnChange observer, and the control API reads Peers.
// It never routes a name that public DNS could answer for.
package discovery

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/hearth-chat/hearth/internal/netmon"
	"github.com/hearth-chat/hearth/internal/store"
)

// The DNS-SD service this package announces and browses.
const (
	ServiceType = "_hearth._tcp"
	Domain      = "local."
)

// Timing (RFC 6762). Nothing runs on a fixed period: after start the
// daemon announces twice (§8.3), queries with an interval that triples
// (queryBackoff) up to MaxQueryInterval (§5.2), answers queries, and listens: every response
// on the group updates the table. A peer's records are refreshed by a
// query at 80, 85, 90 and 95 % of their TTL (§5.2) and dropped when it
// runs out, or one second after a goodbye (§10.1).
const (
	// RecordTTL is the TTL of our records: how long a daemon that
	// vanished without a goodbye stays listed. 30 minutes keeps a quiet
	// LAN quiet (per peer and TTL, one refresh query and one answer in
	// the usual case, four of each at most: about ten packets an hour
	// for a daemon with one neighbour, see TestQuietHour) while a laptop
	// closed without a goodbye leaves the list within half an hour.
	RecordTTL        = 30 * time.Minute
	MaxQueryInterval = time.Hour
	firstQueryDelay  = 20 * time.Millisecond // plus up to 100 ms (§5.2)
	announceGap      = time.Second           // §8.3
	minResponseGap   = time.Second           // §6.2: one multicast of a record per second per interface

	// queryBackoff is the factor between successive browse intervals.
	// RFC 6762 §5.2: "The interval between the first two queries MUST be
	// at least one second, the intervals between successive queries MUST
	// increase by at least a factor of two." Three (as Apple's
	// mDNSResponder does) is within that: queries at 20–120 ms, then 1,
	// 3, 9, 27 s apart (five in the first minute where doubling sent six,
	// each an idle daemon's wake-up) and the hourly ceiling reached
	// sooner. The first two queries, which find a LAN's daemons, are as
	// before; a daemon that starts later announces itself (§8.3), so it
	// is listed without waiting for our next query.
	queryBackoff = 3
)

var mdnsGroup = &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: 5353}

// Config is what the service needs to know about this server.
type Config struct {
	ServerName string
	KeyID      string            // ed25519:<id> of the current signing key
	Key        ed25519.PublicKey // its public half
	DB         *store.DB         // for the lanpins bucket
	// Advertise is the federation listener's address; empty browses only.
	// A loopback listener is not advertised: no one else could reach it.
	Advertise string
	// BrowseOnly listens and queries but never announces or answers
	// (lan_discovery = browse).
	BrowseOnly bool
	// Interfaces limits discovery to these interface names (lan_interfaces);
	// empty: every up, multicast-capable interface but loopback.
	Interfaces []string
	// TXT adds "key=value" strings to the announcement (newer fields,
	// e.g. a certificate binding).
	TXT []string
	// InternetKeys, when set, lets a public server name heard on the LAN
	// be routed over the LAN (LAN-first) when its announced key is the
	// one the internet gave for it; unset, public names are only listed.
	InternetKeys InternetKeys
	// Net tells of address changes and of waking from sleep; the daemon
	// shares one between discovery and federation. Nil: the service
	// watches with a monitor of its own.
	Net *netmon.Monitor
}

// Service announces this server and keeps the table of the others.
type Service struct {
	cfg   Config
	table *table
	me    self

	// What to announce, from cfg.Advertise (set by Start).
	announce bool
	ip       netip.Addr // invalid: every address of each interface

	mu        sync.Mutex
	observers []func(p Peer, gone bool)
	// changing serialises each table change with the delivery of its
	// Changes (the discovery goroutine, Forget, Accept and Recheck run on
	// different goroutines): otherwise a route computed before a Forget
	// or an expiry could be delivered after its "gone", and the observer
	// would keep routing a peer the table no longer holds.
	changing sync.Mutex
	ifsSnap  []iface // for Route, read by other goroutines

	// Owned by the run goroutine (and Start/Stop around it).
	conn       *ipv4.PacketConn
	udp        *net.UDPConn  // conn's socket, read and written directly (run.go)
	raw        rawConn       // udp's, for system calls that skip the runtime's bookkeeping (rawsys_linux.go)
	mcastIf    int           // the interface index multicasts go out on now (0: not set)
	recent     [][]byte      // the packets sent last, to know their looped-back copies (run.go)
	heard      atomic.Uint64 // packets handled, not counting our own looped back (tests)
	joined     map[int]bool
	ifs        []iface
	netKey     string
	annLeft    int
	nextAnn    time.Time
	queryEvery time.Duration
	nextQuery  time.Time
	respondAt  map[int]time.Time // pending answers per interface index (0: all)
	lastResp   map[int]time.Time
	sent       int                     // packets sent (run goroutine), for tests
	sentTotal  atomic.Uint64           // the same, for PacketsSent
	sendHook   func(b []byte, i iface) // tests: instead of the socket

	// Until when browse queries list no known answers after waking from
	// sleep, so every peer still there answers (woke).
	askAllUntil time.Time

	txt    txtState // under mu
	cancel context.CancelFunc
	done   chan struct{}

	// What other goroutines ask of the run goroutine (run.go): set, then
	// the socket's read deadline is moved to the past to interrupt it.
	pokeMu   sync.Mutex
	poked    atomic.Bool
	pending  pokes
	pokeConn atomic.Pointer[net.UDPConn] // udp, for other goroutines
}

// New returns a service that has not started.
func New(cfg Config) *Service {
	s := &Service{cfg: cfg, table: newTable(cfg.DB, cfg.ServerName, cfg.InternetKeys), joined: map[int]bool{},
		respondAt: map[int]time.Time{}, lastResp: map[int]time.Time{}}
	extra := slices.Clone(cfg.TXT)
	slices.Sort(extra)
	s.me = self{serverName: cfg.ServerName, txt: txtRecords(cfg.ServerName, cfg.KeyID, cfg.Key, extra...)}
	s.txt = txtState{fixed: extra, all: slices.Clone(s.me.txt)}
	return s
}

// OnChange registers fn, called when a verified peer appears, changes
// address or is heard again after a silence (gone false) and when it
// expires, says goodbye, is forgotten or announces another key (gone
// true). Calls come from one goroutine at a time (the discovery
// goroutine, or a Forget, Accept or Recheck call), in the order the table
// made the changes; fn must not call Forget, Accept, Refuse or Recheck.
func (s *Service) OnChange(fn func(p Peer, gone bool)) {
	s.mu.Lock()
	s.observers = append(s.observers, fn)
	s.mu.Unlock()
}

// Peers returns the peers currently on the network, by server name.
func (s *Service) Peers() []Peer { return s.table.list() }

// PacketsSent is how many mDNS packets this service has multicast since
// it started (`make bench` reports a quiet hour's worth).
func (s *Service) PacketsSent() uint64 { return s.sentTotal.Load() }

// Route is the "ip:port" to dial for a peer, preferring an address in
// one of the networks discovery runs on.
func (s *Service) Route(p Peer) string {
	s.mu.Lock()
	var nets []*net.IPNet
	for _, i := range s.ifsSnap {
		for _, a := range i.addrs {
			nets = append(nets, &net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen())})
		}
	}
	s.mu.Unlock()
	return p.Route(nets)
}

// Forget deletes the pin of name and drops it from the table, so the
// next announcement of that name is trusted on first use again (the
// owner accepting a new key, or cleaning up). It reports whether there
// was anything to forget, and asks the network at once.
func (s *Service) Forget(ctx context.Context, name string) (bool, error) {
	s.changing.Lock()
	existed, changes, err := s.table.forget(ctx, name)
	s.apply(changes)
	s.changing.Unlock()
	if err != nil {
		return false, err
	}
	s.poke(func(p *pokes) { p.kick = true })
	return existed, nil
}

// Accept pins the key name announces now in place of the one pinned
// before (the owner accepting a key change, e.g. after a reinstall); the
// peer is routed at once if its binding verifies. False when name is not
// listed with a changed key.
func (s *Service) Accept(ctx context.Context, name string) (bool, error) {
	s.changing.Lock()
	defer s.changing.Unlock()
	ok, changes, err := s.table.decide(ctx, name, true, time.Now())
	s.apply(changes)
	return ok, err
}

// Refuse keeps refusing the new key name announces and stops flagging it
// as news; another new key is flagged again. False when name is not
// listed with a changed key.
func (s *Service) Refuse(ctx context.Context, name string) (bool, error) {
	s.changing.Lock()
	defer s.changing.Unlock()
	ok, _, err := s.table.decide(ctx, name, false, time.Now())
	return ok, err
}

// Recheck checks serverName's public-name announcements against
// Config.InternetKeys again, when that learned one of its keys (the
// daemon calls it from serverkeys.OnLearn): an unconfirmed peer becomes
// routable at once rather than at its next announcement.
func (s *Service) Recheck(serverName string) {
	s.changing.Lock()
	defer s.changing.Unlock()
	s.apply(s.table.recheck(serverName))
}

// PinnedSPKI is the SHA-256 of the certificate public key (SPKI) that
// serverName's verified announcement binds to its pinned signing key:
// outbound TLS to that LAN peer must present exactly that key
// (federation/resolve.CertPins). False for every other name.
func (s *Service) PinnedSPKI(serverName string) ([32]byte, bool) {
	return s.table.pinnedSPKI(serverName)
}

// Start opens the mDNS socket and starts announcing (if cfg.Advertise is
// set and not BrowseOnly) and listening. A malformed cfg.Advertise or a
// socket that cannot be opened is an error; interfaces coming and going
// later are followed.
func (s *Service) Start() error {
	if err := s.parseAdvertise(); err != nil {
		return err
	}
	lc := net.ListenConfig{Control: reuse}
	c, err := lc.ListenPacket(context.Background(), "udp4", "0.0.0.0:5353")
	if err != nil {
		return fmt.Errorf("discovery: open the mDNS port: %w", err)
	}
	p := ipv4.NewPacketConn(c)
	// Where control messages are not supported (Windows), packets carry
	// no interface and are checked against every interface's subnets.
	_ = p.SetControlMessage(ipv4.FlagInterface, true)
	_ = p.SetMulticastTTL(255)       // RFC 6762 §11
	_ = p.SetMulticastLoopback(true) // other daemons on this machine
	s.conn, s.udp = p, c.(*net.UDPConn)
	if rc, err := s.udp.SyscallConn(); err == nil {
		s.raw = rc
	}
	s.pokeConn.Store(s.udp)
	mon := s.cfg.Net
	if mon == nil {
		mon = netmon.New()
	}
	// Subscribed before the first look at the interfaces, so no change
	// falls between the two.
	netChanges, unsubscribe := mon.Subscribe()
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	// Network changes reach the run goroutine as pokes: it sleeps in its
	// socket read, not in a select.
	forwarded := make(chan struct{})
	go func() {
		defer close(forwarded)
		for {
			select {
			case <-ctx.Done():
				return
			case ch := <-netChanges:
				s.poke(func(p *pokes) {
					p.net.Network = p.net.Network || ch.Network
					p.net.Slept = p.net.Slept || ch.Slept
					p.netChanged = true
				})
			}
		}
	}()
	go func() {
		defer close(s.done)
		s.run(ctx)
		unsubscribe()
		<-forwarded
		s.goodbye()
		c.Close()
	}()
	return nil
}

// Stop sends goodbyes for our records and ends discovery.
func (s *Service) Stop() {
	if s.cancel != nil {
		s.cancel()
		s.poke(func(*pokes) {})
		<-s.done
		s.cancel = nil
	}
}

func (s *Service) parseAdvertise() error {
	if s.cfg.Advertise == "" || s.cfg.BrowseOnly {
		return nil
	}
	host, portStr, err := net.SplitHostPort(s.cfg.Advertise)
	if err == nil {
		s.me.port, err = net.LookupPort("tcp", portStr)
	}
	if err != nil {
		return fmt.Errorf("discovery: advertise %q: %w", s.cfg.Advertise, err)
	}
	ip, _ := netip.ParseAddr(host)
	if host == "localhost" || ip.IsLoopback() {
		slog.Info("LAN discovery: federation listens on loopback only; browsing without announcing this server", "listen", s.cfg.Advertise)
		return nil
	}
	if ip.IsValid() && !ip.IsUnspecified() {
		s.ip = ip.Unmap()
	}
	s.announce = true
	return nil
}

// tick does what is due at now and returns when to wake up next (zero:
// on the next packet or event only).
func (s *Service) tick(now time.Time) time.Time {
	if s.applyTXT() && s.announce {
		s.annLeft, s.nextAnn = 2, now // RFC 6762 §8.4
	}
	if s.annLeft > 0 && !now.Before(s.annDue()) {
		s.respond(0, RecordTTL, now)
		s.annLeft--
		s.nextAnn = now.Add(announceGap)
	}
	for idx, at := range s.respondAt {
		if !now.Before(at) {
			delete(s.respondAt, idx)
			s.respond(idx, RecordTTL, now)
		}
	}
	if !s.nextQuery.IsZero() && !now.Before(s.nextQuery) {
		// Our own PTR goes among the known answers, so our responder does
		// not answer our own query when it loops back.
		var known []knownAnswer
		if !now.Before(s.askAllUntil) {
			known = s.table.known(now)
		}
		if s.announce {
			known = append([]knownAnswer{{instance: s.me.instance(), ttl: RecordTTL}}, known...)
		}
		s.query("", known)
		s.queryEvery = min(max(queryBackoff*s.queryEvery, time.Second), MaxQueryInterval)
		s.nextQuery = now.Add(s.queryEvery)
	}
	s.changing.Lock()
	refresh, changes := s.table.due(now)
	s.apply(changes)
	s.changing.Unlock()
	for _, inst := range refresh {
		s.query(inst, nil)
	}

	next := earliest(s.table.next(), s.nextQuery)
	if s.annLeft > 0 {
		next = earliest(next, s.annDue())
	}
	for _, at := range s.respondAt {
		next = earliest(next, at)
	}
	return next
}

// annAlign is how much later the second announcement may go out to
// travel with a browse query due just after it.
const annAlign = 200 * time.Millisecond

// annDue is when the next announcement goes out. The second goes with
// the browse query due at most annAlign after it (the second query, 1 s
// after the first, which followed the first announcement by 20–120 ms):
// one wake-up for both instead of two, still at least a second after the
// first announcement (RFC 6762 §8.3). Issue 15: an idle daemon's first
// minute is mostly these wake-ups. The first announcement never waits:
// it is how peers already running learn of us.
func (s *Service) annDue() time.Time {
	if s.annLeft == 1 && !s.nextQuery.IsZero() && s.nextQuery.After(s.nextAnn) && s.nextQuery.Sub(s.nextAnn) <= annAlign {
		return s.nextQuery
	}
	return s.nextAnn
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// wakeGrace is how long a peer known before this machine slept stays
// listed without answering the queries sent on waking.
const wakeGrace = 5 * time.Second

// netChanged handles what the network monitor reported: new interfaces
// or addresses are announced at once (checkNetworks); after a sleep
// everything is suspect, since peers may have left and may have dropped
// us, so we announce again, browse from the shortest interval without
// known answers (every peer still there answers), and drop the peers
// that do not answer within wakeGrace.
func (s *Service) netChanged(c netmon.Change, now time.Time) {
	if c.Slept {
		s.woke(now)
	}
	if c.Network {
		s.checkNetworks(now)
	}
}

func (s *Service) woke(now time.Time) {
	slog.Info("LAN discovery: this machine slept; asking the network again")
	if s.announce {
		s.annLeft, s.nextAnn = 2, now
	}
	s.queryEvery, s.nextQuery = 0, now
	s.askAllUntil = now.Add(wakeGrace)
	s.table.suspect(now, wakeGrace)
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
