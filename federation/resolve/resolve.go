// Package resolve owns server-name resolution and the HTTP transport for
// outbound federation (Server-Server API, "Resolving server names", spec
// v1.16): it turns a server name into the address to dial, the Host header
// and the name the TLS certificate must match, caches what the spec lets it
// cache, and carries fclient's matrix:// requests over verified TLS.
//
// It never decides whether a server may be contacted (that is the caller's
// policy) and never skips certificate verification; what it does decide is
// which addresses may be dialled (policy.go): public ones, the configured
// AllowNetworks and static routes, so a server name someone else chose
// cannot point federation at this computer or its LAN.
//
// Testing without DNS: Config.Static answers whole server names (used by
// tests and LAN discovery); Config.LookupSRV replaces SRV queries; and
// Config.DialContext replaces the network dial for every connection this
// package makes, well-known fetches to "https://<name>" included, so a test
// maps "name:443" to an httptest listener and serves a certificate from a
// CA it generated and named in Config.CAFile.
package resolve

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"
)

const (
	defaultPort    = 8448
	defaultTimeout = 30 * time.Second
	dialTimeout    = 5 * time.Second
)

// Config configures a Resolver. The zero value resolves through the
// system's DNS and trusts the system roots.
type Config struct {
	// Static maps a server name to the "host:port" to dial. It is consulted
	// before anything else; Host and TLS name stay the server name's.
	Static map[string]string
	// CAFile is a PEM file of extra trusted roots, besides the system pool.
	CAFile string
	// Timeout bounds one request, body included (default 30 s).
	Timeout time.Duration
	// LookupSRV replaces net.DefaultResolver.LookupSRV (tests).
	LookupSRV func(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
	// DialContext replaces the TCP dial of every connection, well-known
	// fetches included (tests map "name:443" to a loopback listener). It
	// replaces the network, and so the address policy, too.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// AllowNetworks are the non-public networks federation may dial
	// (federation_allow_networks); public addresses and Static routes are
	// always allowed, everything else is refused (policy.go).
	AllowNetworks []netip.Prefix
	// Now replaces time.Now for cache expiry (tests).
	Now func() time.Time
}

// Target is where to send requests for one server name.
type Target struct {
	Addr          string // host:port to dial
	Host          string // Host header
	TLSServerName string // SNI and the name the certificate must match
	// Static is true for a route of the static table: the owner or LAN
	// discovery chose the address, so the address policy does not apply.
	Static bool
}

// Resolver resolves server names and holds their caches. Use New.
type Resolver struct {
	timeout   time.Duration
	lookupSRV func(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
	dial      func(ctx context.Context, network, addr string) (net.Conn, error) // address policy checked
	policy    addrPolicy
	dialAny   func(ctx context.Context, network, addr string) (net.Conn, error) // static routes only
	now       func() time.Time
	tlsConfig *tls.Config
	wkClient  *http.Client
	tr        *transport

	mu         sync.Mutex
	static     map[string]string
	wellKnown  map[string]wellKnownEntry
	wkInFlight map[string]*wellKnownCall
	srv        map[string]srvEntry
	generation uint64 // bumped by Forget, so results begun before it are not stored
	pins       CertPins
}

// New returns a Resolver for cfg. It fails if CAFile cannot be read or holds
// no certificate, or if a Static address is not host:port.
func New(cfg Config) (*Resolver, error) {
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool() // no system pool on this platform: CAFile only
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("resolve: reading CA file: %w", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("resolve: no PEM certificate in CA file %s", cfg.CAFile)
		}
	}
	r := &Resolver{
		timeout:    cfg.Timeout,
		lookupSRV:  cfg.LookupSRV,
		dial:       cfg.DialContext,
		policy:     addrPolicy(cfg.AllowNetworks),
		now:        cfg.Now,
		tlsConfig:  &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		static:     make(map[string]string, len(cfg.Static)),
		wellKnown:  make(map[string]wellKnownEntry),
		wkInFlight: make(map[string]*wellKnownCall),
		srv:        make(map[string]srvEntry),
	}
	if r.timeout <= 0 {
		r.timeout = defaultTimeout
	}
	if r.lookupSRV == nil {
		r.lookupSRV = net.DefaultResolver.LookupSRV
	}
	if r.dial == nil {
		r.dial, r.dialAny = newDialers(cfg.AllowNetworks)
	} else {
		r.dialAny = r.dial
	}
	if r.now == nil {
		r.now = time.Now
	}
	for name, addr := range cfg.Static {
		if err := r.SetStatic(spec.ServerName(name), addr); err != nil {
			return nil, err
		}
	}
	r.wkClient = r.newWellKnownClient()
	r.tr = newTransport(r)
	return r, nil
}

// SetStatic maps server to addr ("host:port") ahead of every other step, or
// removes the mapping when addr is empty. LAN discovery calls it as peers
// come and go.
// The idle connections of a route that went are closed: a peer whose key
// changed must not keep being reached over a connection made before.
func (r *Resolver) SetStatic(server spec.ServerName, addr string) error {
	if addr != "" {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("resolve: static address %q for %s: %w", addr, server, err)
		}
	}
	r.mu.Lock()
	if addr == "" {
		delete(r.static, string(server))
	} else {
		r.static[string(server)] = addr
	}
	tr := r.tr
	r.mu.Unlock()
	if addr == "" && tr != nil {
		tr.dropServer(string(server))
	}
	return nil
}

// Forget drops every cached well-known and SRV answer and every idle
// connection: after a network change or wake-up they may all be stale.
func (r *Resolver) Forget() {
	r.mu.Lock()
	r.wellKnown = make(map[string]wellKnownEntry)
	r.srv = make(map[string]srvEntry)
	r.generation++
	r.mu.Unlock()
	r.tr.forget()
	r.wkClient.CloseIdleConnections()
}

// TLSConfig returns a fresh TLS client configuration trusting the system
// roots plus CAFile (TLS 1.2 at least), for any other outbound TLS the
// federation code makes.
func (r *Resolver) TLSConfig() *tls.Config {
	return r.tlsConfig.Clone()
}

// Resolve finds where to send requests for server, in the order of the
// spec's "Resolving server names" (v1.16), after the Static table:
//  1. an IP literal, with its port or 8448;
//  2. a hostname with an explicit port, dialled as is;
//  3. https://<hostname>/.well-known/matrix/server: its m.server is resolved
//     by steps 1–2 and 4–6 (never another well-known), with Host and TLS
//     name the delegated name;
//  4. SRV _matrix-fed._tcp.<hostname>; 5. SRV _matrix._tcp.<hostname>
//     (deprecated); 6. <hostname>:8448.
func (r *Resolver) Resolve(ctx context.Context, server spec.ServerName) (Target, error) {
	r.mu.Lock()
	addr, ok := r.static[string(server)]
	r.mu.Unlock()
	if ok {
		host, _, valid := spec.ParseAndValidateServerName(server)
		if !valid {
			host = string(server)
		}
		return Target{Addr: addr, Host: string(server), TLSServerName: tlsName(host), Static: true}, nil
	}
	host, port, err := parseServerName(server)
	if err != nil {
		return Target{}, err
	}
	if t, ok := direct(server, host, port); ok {
		return t, nil
	}
	if delegated, ok := r.wellKnownFor(ctx, host); ok {
		dhost, dport, err := parseServerName(delegated)
		if err != nil {
			return Target{}, err // cannot happen: checked when fetched
		}
		if t, ok := direct(delegated, dhost, dport); ok {
			return t, nil
		}
		return r.viaSRV(ctx, dhost)
	}
	if err := ctx.Err(); err != nil {
		return Target{}, err
	}
	return r.viaSRV(ctx, host)
}

// direct covers the steps that need no lookup: an IP literal (with its port
// or 8448) and a hostname with an explicit port. Host is the name as given,
// port included.
func direct(name spec.ServerName, host string, port int) (Target, bool) {
	ip := isIPLiteral(host)
	if !ip && port < 0 {
		return Target{}, false
	}
	if port < 0 {
		port = defaultPort
	}
	return Target{
		Addr:          net.JoinHostPort(tlsName(host), strconv.Itoa(port)),
		Host:          string(name),
		TLSServerName: tlsName(host),
	}, true
}

// viaSRV covers the last steps for a hostname without a port: SRV
// _matrix-fed._tcp, then the deprecated _matrix._tcp, then port 8448. Host
// and TLS name are the hostname, never the SRV target.
func (r *Resolver) viaSRV(ctx context.Context, host string) (Target, error) {
	for _, service := range []string{"matrix-fed", "matrix"} {
		addr, err := r.srvAddr(ctx, service, host)
		if err != nil {
			return Target{}, err
		}
		if addr != "" {
			return Target{Addr: addr, Host: host, TLSServerName: host}, nil
		}
	}
	return Target{Addr: net.JoinHostPort(host, strconv.Itoa(defaultPort)), Host: host, TLSServerName: host}, nil
}

// ErrInvalidServerName is returned for a name outside the spec's grammar.
var ErrInvalidServerName = errors.New("resolve: invalid server name")

func parseServerName(server spec.ServerName) (host string, port int, err error) {
	host, port, valid := spec.ParseAndValidateServerName(server)
	if !valid || port == 0 || len(server) > 255 {
		return "", 0, fmt.Errorf("%w: %q", ErrInvalidServerName, server)
	}
	return host, port, nil
}

// isIPLiteral reports whether host (as split from a server name) is an IPv4
// address or a bracketed IPv6 address.
func isIPLiteral(host string) bool {
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		return true
	}
	return net.ParseIP(host) != nil
}

// tlsName strips the brackets of an IPv6 literal: crypto/tls matches IP
// SANs against the bare address.
func tlsName(host string) string {
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		return host[1 : len(host)-1]
	}
	return host
}
