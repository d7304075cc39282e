package daemon

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/hearth-chat/hearth/calls/turn"
	"github.com/hearth-chat/hearth/federation/resolve"
)

// TURN modes (config key turn).
const (
	TURNAuto = "auto" // on when federation is not off
	TURNOn   = "on"
	TURNOff  = "off"
)

// turnSecretName is the TURN REST shared secret of the built-in relay in
// the secret store, next to the signing key and the TLS certificate.
const turnSecretName = "turn_secret"

// validateTURN checks the turn keys together (Validate).
func (c *Config) validateTURN() error {
	switch c.TURN {
	case TURNAuto, TURNOn, TURNOff:
	default:
		return fmt.Errorf("turn must be auto, on or off, not %q", c.TURN)
	}
	if (strings.TrimSpace(c.TURNURIs) == "") != (c.TURNSharedSecret == "") {
		return fmt.Errorf("turn_uris and turn_shared_secret go together: set both or neither")
	}
	if c.TURNUserLifetime < 60 {
		return fmt.Errorf("turn_user_lifetime must be at least 60 seconds")
	}
	if c.TURNBandwidth < 0 {
		return fmt.Errorf("turn_bandwidth_bytes must not be negative")
	}
	if _, err := resolve.ParseNetworks(splitList(c.TURNAllowNetworks)); err != nil {
		return fmt.Errorf("turn_allow_networks: %w", err)
	}
	return nil
}

// turnRelay is what GET /voip/turnServer and the call agent ask for TURN
// credentials: the built-in relay, an external server, or nothing.
type turnRelay struct {
	provider turn.Provider // nil: no TURN
	server   *turn.Server  // the built-in relay, when it runs
}

// TURNCredentials implements matrix.TURN.
func (t *turnRelay) TURNCredentials(userID, host string) ([]string, string, string, time.Duration) {
	uris, c := t.provider.Credentials(userID, host)
	return uris, c.Username, c.Password, c.TTL
}

func (t *turnRelay) stop() {
	if t != nil && t.server != nil {
		t.server.Close()
	}
}

// startTURN starts the built-in relay when the config wants it, or points
// clients at the external server of turn_uris. The relay serves where
// federation listens: every address in lan and internet mode (lan admits
// clients and relays to peers on this machine's networks only, internet
// also to public addresses), loopback when federation is off and turn =
// on. It starts with the daemon; a federation mode switched later applies
// to the relay at the next start.
func (d *Daemon) startTURN(secrets secretStore) (*turnRelay, error) {
	cfg := d.cfg
	ttl := time.Duration(cfg.TURNUserLifetime) * time.Second
	if uris := splitList(cfg.TURNURIs); len(uris) > 0 {
		slog.Info("TURN: clients use the external server", "uris", strings.Join(uris, ","))
		return &turnRelay{provider: turn.External{URIs: uris, Secret: []byte(cfg.TURNSharedSecret), TTL: ttl}}, nil
	}
	if cfg.TURN == TURNOff || cfg.TURN == TURNAuto && cfg.Federation == FederationOff {
		return nil, nil
	}
	secret, err := loadOrCreateTURNSecret(secrets)
	if err != nil {
		return nil, err
	}
	allow, err := resolve.ParseNetworks(splitList(cfg.TURNAllowNetworks))
	if err != nil {
		return nil, fmt.Errorf("turn_allow_networks: %w", err)
	}
	listen := cfg.TURNListen
	if listen == "" {
		listen = fmt.Sprintf(":%d", turn.DefaultPort)
		if cfg.Federation == FederationOff {
			listen = fmt.Sprintf("127.0.0.1:%d", turn.DefaultPort)
		}
	}
	bw := cfg.TURNBandwidth
	if bw == 0 {
		bw = -1 // no limit
	}
	scope := turn.Scope{Allow: allow, Internet: cfg.Federation == FederationInternet}
	if cfg.Federation != FederationOff {
		scope.LocalNets = interfaceNets
	}
	srv, err := turn.Start(turn.Config{Secret: secret, TTL: ttl, Realm: cfg.ServerName, Listen: listen,
		AnyPortIfTaken: cfg.TURNListen == "", Scope: scope, BandwidthBytes: bw})
	if err != nil {
		return nil, err
	}
	slog.Info("TURN relay is on", "listen", listen, "port", srv.Port(), "federation", cfg.Federation)
	return &turnRelay{provider: srv, server: srv}, nil
}

// loadOrCreateTURNSecret reads the relay's shared secret, making 32
// random bytes the first time.
func loadOrCreateTURNSecret(store secretStore) ([]byte, error) {
	s, err := store.get(turnSecretName)
	if err == nil {
		b, err := base64.RawStdEncoding.DecodeString(strings.TrimSpace(s))
		if err != nil || len(b) < 16 {
			return nil, fmt.Errorf("the TURN secret in %s is damaged; remove it to make a new one", store.where())
		}
		return b, nil
	}
	if !errors.Is(err, errNoSecret) {
		return nil, fmt.Errorf("read the TURN secret: %w", err)
	}
	b := make([]byte, 32)
	rand.Read(b)
	if err := store.set(turnSecretName, base64.RawStdEncoding.EncodeToString(b)); err != nil {
		return nil, fmt.Errorf("store the TURN secret: %w", err)
	}
	return b, nil
}
