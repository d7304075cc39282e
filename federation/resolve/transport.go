package resolve

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"
)

const (
	poolIdleTimeout = 90 * time.Second // idle connections per target
	poolUnusedAfter = 10 * time.Minute // a target's transport is dropped after this
)

// Transport returns the RoundTripper for outbound federation, to pass to
// fclient.WithTransport. It accepts matrix:// and matrix-federation:// URLs,
// resolves the host part with Resolve, and sends the request over TLS to
// Target.Addr with SNI and certificate name Target.TLSServerName (system
// roots plus CAFile, TLS 1.2 at least) and Host header Target.Host.
// Connections are kept alive and pooled per (address, TLS name), so a
// connection verified for one name never carries another name's requests.
// Each request is bounded by Config.Timeout, body included.
func (r *Resolver) Transport() http.RoundTripper {
	return r.tr
}

// dialContext is the one dialer of the package: Config.DialContext (or the
// system's, refusing addresses the policy does not allow: policy.go) with
// a 5 s bound.
func (r *Resolver) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	return r.dial(ctx, network, addr)
}

// dialStatic dials a static route's address, which the owner or LAN
// discovery chose: the address policy does not apply.
func (r *Resolver) dialStatic(ctx context.Context, network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	return r.dialAny(ctx, network, addr)
}

type transport struct {
	r *Resolver

	mu    sync.Mutex
	pools map[poolKey]*pool
}

// poolKey separates static routes' connections (dialled without the
// address policy) from those to the same address found another way.
type poolKey struct {
	addr, tlsName string
	static        bool
	server        string // static routes: the server name, whose pin the handshake checks
}

type pool struct {
	rt       *http.Transport
	lastUsed time.Time
	// conns are a static route's open connections, busy ones included,
	// so Reconnect can end them (static pools only).
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// trackedConn leaves its pool's set when closed.
type trackedConn struct {
	net.Conn
	p    *pool
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.p.mu.Lock()
		delete(c.p.conns, c.Conn)
		c.p.mu.Unlock()
	})
	return c.Conn.Close()
}

// track wraps dial so that p knows the connections it makes.
func (p *pool) track(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		p.mu.Lock()
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		return &trackedConn{Conn: c, p: p}, nil
	}
}

// closeAll closes every connection of p, busy ones too.
func (p *pool) closeAll() {
	p.rt.CloseIdleConnections()
	p.mu.Lock()
	conns := make([]net.Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

func newTransport(r *Resolver) *transport {
	return &transport{r: r, pools: make(map[poolKey]*pool)}
}

// RoundTrip implements http.RoundTripper.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil || (req.URL.Scheme != "matrix" && req.URL.Scheme != "matrix-federation") {
		closeBody(req)
		return nil, fmt.Errorf("resolve: transport wants a matrix:// URL, got %v", req.URL)
	}
	target, err := t.r.Resolve(req.Context(), spec.ServerName(req.URL.Host))
	if err != nil {
		closeBody(req)
		return nil, fmt.Errorf("resolve: %s: %w", req.URL.Host, err)
	}
	ctx, cancel := context.WithTimeout(req.Context(), t.r.timeout)
	out := req.Clone(ctx) // deep-copies URL and headers: the caller's request stays as it was
	out.URL.Scheme = "https"
	out.URL.Host = target.Addr
	out.Host = target.Host
	resp, err := t.poolFor(target).RoundTrip(out)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("resolve: %s (%s): %w", req.URL.Host, target.Addr, err)
	}
	resp.Request = req
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// poolFor returns the http.Transport for target, creating it on first use
// and dropping transports nobody used for poolUnusedAfter.
func (t *transport) poolFor(target Target) *http.Transport {
	key := poolKey{addr: target.Addr, tlsName: target.TLSServerName, static: target.Static}
	pins := t.r.certPins()
	if target.Static {
		key.server = target.Host
	}
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.pools[key]
	if p == nil {
		for k, old := range t.pools {
			if now.Sub(old.lastUsed) > poolUnusedAfter {
				old.rt.CloseIdleConnections()
				delete(t.pools, k)
			}
		}
		tlsConfig := t.r.TLSConfig()
		tlsConfig.ServerName = target.TLSServerName
		dial := t.r.dialContext
		if target.Static {
			dial = t.r.dialStatic
			if pins != nil {
				tlsConfig = t.r.pinnedTLSConfig(pins, target.Host, target.TLSServerName)
			}
		}
		p = &pool{conns: map[net.Conn]struct{}{}}
		if target.Static {
			dial = p.track(dial)
		}
		p.rt = &http.Transport{
			DialContext:           dial,
			TLSClientConfig:       tlsConfig,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: t.r.timeout,
			IdleConnTimeout:       poolIdleTimeout,
			MaxIdleConnsPerHost:   8,
			ForceAttemptHTTP2:     true,
		}
		t.pools[key] = p
	}
	p.lastUsed = now
	return p.rt
}

// forget closes every idle connection and drops every per-target transport.
func (t *transport) forget() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range t.pools {
		p.rt.CloseIdleConnections()
	}
	t.pools = make(map[poolKey]*pool)
}

// dropServer closes every connection of server's static-route pools,
// busy ones too, and drops the pools.
func (t *transport) dropServer(server string) {
	t.mu.Lock()
	var drop []*pool
	for k, p := range t.pools {
		if k.static && k.server == server {
			drop = append(drop, p)
			delete(t.pools, k)
		}
	}
	t.mu.Unlock()
	for _, p := range drop {
		p.closeAll()
	}
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// cancelOnClose ends the request's timeout context once the body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
