package daemon

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/discovery"
	"github.com/hearth-chat/hearth/federation/serverkeys"
	"github.com/hearth-chat/hearth/localapi/control"
)

// internetKeys answers discovery's question "which key did the internet
// give for this public server name?" from federation/serverkeys' cache:
// keys fetched from the server through DNS resolution or from a notary.
type internetKeys struct{ k *serverkeys.Keys }

func (i internetKeys) InternetKey(name, keyID string) (ed25519.PublicKey, bool) {
	if i.k == nil {
		return nil, false
	}
	return i.k.Known(spec.ServerName(name), gomatrixserverlib.KeyID(keyID))
}

// startDiscovery starts LAN discovery when lan_discovery is on or
// browse: it always looks for other Hearth daemons, and announces this one
// only when on and while federation is on, since otherwise there is
// nothing to connect to. A verified peer (a LAN-only name whose key is the
// one pinned on first sight, or a public name whose key is the one the
// internet gave for it) gets a route in the federation resolver, ahead
// of federation_servers (routeLANPeer). Discovery failing is
// logged, never fatal: it is a convenience.
func (d *Daemon) startDiscovery(mode string) {
	d.lanMu.Lock()
	d.lanMode = mode
	d.lanMu.Unlock()
	if mode != "on" && mode != "browse" {
		return
	}
	key := d.lanKey
	cfg := discovery.Config{ServerName: d.cfg.ServerName, KeyID: key.ID,
		Key: key.Key.Public().(ed25519.PublicKey), DB: d.db, BrowseOnly: mode == "browse", Net: d.net}
	for _, name := range strings.Split(d.cfg.LANInterfaces, ",") {
		if name = strings.TrimSpace(name); name != "" {
			cfg.Interfaces = append(cfg.Interfaces, name)
		}
	}
	if f := d.fed; f != nil {
		// The address it is bound to, or, while federation is switched
		// off, the configured one (fed.Addr).
		cfg.Advertise = f.Addr()
		// The certificate binding: peers trust our self-signed federation
		// certificate because our signing key vouches for its key
		// (discovery/binding.go). Federation started first, so the
		// certificate exists.
		if spki, ok := d.tlsPublicKey(); ok {
			cfg.TXT = append(cfg.TXT, discovery.BindingTXT(cfg.ServerName, spki, key.Key)...)
		}
		// LAN-first routing of public names: one heard on the LAN with
		// the key the internet gave for it is routed over the LAN.
		cfg.InternetKeys = internetKeys{f.keys}
	}
	svc := discovery.New(cfg)
	d.startPeople(svc)
	if d.fed != nil {
		svc.OnChange(d.routeLANPeer(svc))
		// A key learned from the internet may confirm a public name
		// already heard on the LAN: check it now, not at its next
		// announcement.
		d.fed.keys.OnLearn(func(server spec.ServerName) {
			if lan := d.lanService(); lan != nil {
				lan.Recheck(string(server))
			}
		})
	}
	if d.fed != nil {
		// Outbound TLS to a LAN route checks the certificate key the
		// peer's announcement bound, not the CA roots. Set before Start,
		// so no route exists before the resolver knows where its pins are
		// (a pool built without them would refuse the peer's self-signed
		// certificate until it next went away). A service that fails to
		// start pins nothing: every name keeps the CA rules.
		d.fed.resolver.SetCertPins(svc)
	}
	if err := svc.Start(); err != nil {
		slog.Warn("LAN discovery is off", "err", err)
		return
	}
	d.lanMu.Lock()
	d.lan = svc
	d.lanMu.Unlock()
}

// routeLANPeer adds and removes resolver routes as verified peers come and
// go. A peer that federation_servers names too is still reached over the
// LAN while it is verified there (LAN-first: the LAN keeps working when
// the route of federation_servers does not), and its federation_servers
// address is put back when it leaves the LAN.
func (d *Daemon) routeLANPeer(svc *discovery.Service) func(discovery.Peer, bool) {
	fixed, _ := parseServerTable(d.cfg.FederationServers)
	var mu sync.Mutex
	routed := map[string]bool{} // names this service routed over the LAN
	return func(p discovery.Peer, gone bool) {
		addr := fixed[p.ServerName]
		if !gone {
			addr = svc.Route(p)
		}
		if err := d.fed.resolver.SetStatic(spec.ServerName(p.ServerName), addr); err != nil {
			slog.Warn("LAN discovery: cannot route to a peer", "server_name", p.ServerName, "err", err)
			return
		}
		mu.Lock()
		again := routed[p.ServerName]
		routed[p.ServerName] = !gone
		mu.Unlock()
		if gone {
			// Connections over the LAN route are of no use now, and may
			// be dead (a pulled cable): a later route to the same address
			// must not reuse them. (SetStatic drops them itself only when
			// the route goes altogether.)
			d.fed.resolver.Reconnect(p.ServerName)
			slog.Info("LAN discovery: peer gone", "server_name", p.ServerName, "fallback", fallbackName(addr))
			return
		}
		slog.Info("LAN discovery: peer found; federation to it goes over the LAN", "server_name", p.ServerName, "addr", addr)
		if again {
			// It is back (or moved): connections made before may be dead
			// without anyone knowing (a pulled cable), so they are ended,
			// a request stuck on one included. Not on a first route: the
			// connections then are those of the internet route (a public
			// name just confirmed), alive, and maybe carrying a request.
			d.fed.resolver.Reconnect(p.ServerName)
		}
		// What is queued for it goes now, not when the backoff of the
		// failures while it was away runs out.
		d.fed.queue.Wake(p.ServerName)
	}
}

// fallbackName says, for the log, where federation to a peer that left
// the LAN goes: its federation_servers address, or DNS.
func fallbackName(fixed string) string {
	if fixed != "" {
		return "federation_servers " + fixed
	}
	return "DNS"
}

func (d *Daemon) stopDiscovery() {
	if lan := d.lanService(); lan != nil {
		lan.Stop()
	}
}

// lanService is LAN discovery while it runs, else nil.
func (d *Daemon) lanService() *discovery.Service {
	d.lanMu.Lock()
	defer d.lanMu.Unlock()
	return d.lan
}

// Peers answers GET /_hearth/v1/peers.
func (b *controlBackend) Peers() control.PeersStatus {
	lan := b.d.lanService()
	st := control.PeersStatus{Enabled: lan != nil, Peers: []control.Peer{}}
	if lan == nil {
		return st
	}
	for _, p := range lan.Peers() {
		cp := control.Peer{ServerName: p.ServerName, Addrs: p.Addrs, Port: p.Port, KeyID: p.KeyID, Key: p.Key,
			FirstSeen: p.FirstSeen, LastSeen: p.LastSeen, KeyChanged: p.KeyChanged, KeyRefused: p.KeyRefused,
			People: controlPeople(p)}
		switch {
		case p.LAN:
		case p.KeyMismatch:
			cp.InternetKey = "mismatch"
		case p.Verified:
			cp.InternetKey = "confirmed"
		default:
			cp.InternetKey = "unconfirmed"
		}
		if p.Bound {
			cp.TLSKey = base64.RawStdEncoding.EncodeToString(p.TLSKey[:])
		}
		if b.d.fed != nil && p.Routable() {
			cp.Route = lan.Route(p)
		}
		st.Peers = append(st.Peers, cp)
	}
	return st
}

// ForgetPeer answers POST /_hearth/v1/peers/{name}/forget: the pin of
// name is deleted, so its next announcement is trusted on first use.
func (b *controlBackend) ForgetPeer(ctx context.Context, name string) (bool, error) {
	lan := b.d.lanService()
	if lan == nil {
		return false, nil
	}
	return lan.Forget(ctx, name)
}

// DecidePeerKey answers POST /_hearth/v1/peers/{name}/accept and
// /refuse: the owner's answer to a peer's key change.
func (b *controlBackend) DecidePeerKey(ctx context.Context, name string, accept bool) (bool, error) {
	lan := b.d.lanService()
	if lan == nil {
		return false, nil
	}
	if !accept {
		return lan.Refuse(ctx, name)
	}
	ok, err := lan.Accept(ctx, name)
	if errors.Is(err, discovery.ErrKeyAmbiguous) {
		return false, &control.Error{Status: http.StatusConflict, Code: "key_ambiguous",
			Message: name + " is announced with more than one new key, so it is not clear which to accept; try again once only one is listed"}
	}
	return ok, err
}
