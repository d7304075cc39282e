package daemon

import (
	"crypto/ed25519"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/federation"
	"github.com/hearth-chat/hearth/federation/queue"
	"github.com/hearth-chat/hearth/federation/resolve"
	"github.com/hearth-chat/hearth/federation/serverkeys"
	"github.com/hearth-chat/hearth/internal/secrets"
	"github.com/hearth-chat/hearth/internal/stream"
	"github.com/hearth-chat/hearth/localapi/matrix"
)

// startFederation starts the Server-Server API unless federation = off:
// keys, discovery, the outbound queue and the TLS listener. Other
// servers this one shares rooms with are then nudged, so anything they
// queued for it while it was away arrives now rather than after their
// back-off.
func (d *Daemon) startFederation(key *secrets.SigningKey, sec secrets.Store, notifier *stream.Notifier, api *matrix.Server) error {
	cfg := d.cfg
	if cfg.Federation == FederationOff {
		return nil
	}
	static, err := parseServerTable(cfg.FederationServers)
	if err != nil {
		return err
	}
	notaries, err := parseNotaries(cfg.TrustedNotaries)
	if err != nil {
		return err
	}
	allow, err := parseAllowNetworks(cfg.FedAllowNetworks)
	if err != nil {
		return err
	}
	cert, err := federationCert(cfg, sec)
	if err != nil {
		return err
	}
	spki, err := secrets.SPKISHA256(cert)
	if err != nil {
		return err
	}
	res, err := resolve.New(resolve.Config{Static: static, CAFile: cfg.CAFile, AllowNetworks: allow})
	if err != nil {
		return err
	}
	name := spec.ServerName(cfg.ServerName)
	keyID := gomatrixserverlib.KeyID(key.ID)
	client := fclient.NewFederationClient([]*fclient.SigningIdentity{{ServerName: name, KeyID: keyID, PrivateKey: key.Key}},
		fclient.WithTransport(res.Transport()))
	id := serverkeys.Identity{ServerName: name, KeyID: keyID, Key: key.Key}
	for _, o := range key.Old {
		id.Old = append(id.Old, serverkeys.OldKey{KeyID: gomatrixserverlib.KeyID(o.ID), Public: o.Public,
			ExpiredTS: spec.Timestamp(o.ExpiredTS)})
	}
	keyClient := fclient.NewClient(fclient.WithTransport(res.Transport()))
	keys := serverkeys.New(d.db, id, keyClient, notaries)
	q := queue.New(d.db, d.rooms, notifier, client, name)
	svc := federation.New(federation.Config{ServerName: name, KeyID: keyID, Key: key.Key, DB: d.db, Rooms: d.rooms,
		Accounts: d.accounts, KeyRing: keys.KeyRing(), Client: client, Queue: q, WellKnownServer: cfg.WellKnownServer, Media: api.Media(), Keys: d.keys,
		Presence: d.asQueue.PresenceMany, ToDevice: appserviceAPI{d.appsvc, d.asQueue}.ToDevice})
	d.keys.SetRemote(svc) // remote users' keys and to-device messages (federation/userkeys.go)
	keys.Register(svc.Mux())
	if m := api.Media(); m != nil {
		m.SetFetcher(svc) // remote mxc:// downloads go through federation
	}

	api.SetFederation(svc)
	d.fed = &fed{service: svc, queue: q, resolver: res, rooms: d.rooms, keyClient: keyClient, notaries: notaries, keys: keys,
		addr: cfg.fedListenAddr(), limits: d.limits, tlsConf: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		mode: cfg.Federation, defaultAddr: cfg.FederationListen == "", certSPKI: spki, net: d.net}
	if err := d.fed.start(); err != nil {
		d.fed = nil
		return err
	}
	slog.Info("federation is on", "mode", cfg.Federation, "listen", d.fed.listener.Addr().String(), "server_name", cfg.ServerName,
		"certificate", certKind(cfg))
	return nil
}

// parseServerTable reads federation_servers: name=host:port, ...
func parseServerTable(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, item := range splitList(s) {
		name, addr, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("federation_servers: %q is not name=host:port", item)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("federation_servers: %q: %w", item, err)
		}
		out[strings.TrimSpace(name)] = strings.TrimSpace(addr)
	}
	return out, nil
}

// parseAllowNetworks reads federation_allow_networks: CIDR, CIDR, ...
func parseAllowNetworks(s string) ([]netip.Prefix, error) {
	nets, err := resolve.ParseNetworks(splitList(s))
	if err != nil {
		return nil, fmt.Errorf("federation_allow_networks: %w", err)
	}
	return nets, nil
}

// parseNotaries reads trusted_notaries: name or name=ed25519:id:base64key.
func parseNotaries(s string) ([]serverkeys.Notary, error) {
	var out []serverkeys.Notary
	for _, item := range splitList(s) {
		name, pin, _ := strings.Cut(item, "=")
		n := serverkeys.Notary{ServerName: spec.ServerName(strings.TrimSpace(name)), Keys: map[gomatrixserverlib.KeyID]ed25519.PublicKey{}}
		if pin != "" {
			i := strings.LastIndex(pin, ":")
			if i < 0 || !strings.HasPrefix(pin, "ed25519:") {
				return nil, fmt.Errorf("trusted_notaries: %q: the key is ed25519:<id>:<base64 public key>", item)
			}
			pub, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(pin[i+1:], "="))
			if err != nil || len(pub) != ed25519.PublicKeySize {
				return nil, fmt.Errorf("trusted_notaries: %q: bad public key", item)
			}
			n.Keys[gomatrixserverlib.KeyID(pin[:i])] = pub
		}
		out = append(out, n)
	}
	return out, nil
}
