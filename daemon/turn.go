package daemon

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hearth-chat/hearth/calls/turn"
	"github.com/hearth-chat/hearth/federation/resolve"
	"github.com/hearth-chat/hearth/internal/secrets"
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
// credentials: the built-in relay, an external server, or nothing. The
// built-in relay follows the federation mode when the control API
// switches it (followFederation), so closing federation also closes the
// relay's port.
type turnRelay struct {
	cfg     Config
	secrets secrets.Store

	mu       sync.Mutex
	mode     string        // the federation mode the relay was started for
	provider turn.Provider // nil: no TURN
	server   *turn.Server  // the built-in relay, when it runs
}

// TURNCredentials implements matrix.TURN.
func (t *turnRelay) TURNCredentials(userID, host string) ([]string, string, string, time.Duration, bool) {
	t.mu.Lock()
	p := t.provider
	t.mu.Unlock()
	if p == nil {
		return nil, "", "", 0, false
	}
	uris, c := p.Credentials(userID, host)
	return uris, c.Username, c.Password, c.TTL, true
}

// ICEServers is the relay for a WebRTC peer in this process (the call
// agent) acting as userID; nil without TURN.
func (t *turnRelay) ICEServers(userID string) []turn.ICEServer {
	t.mu.Lock()
	p := t.provider
	t.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.ICEServers(userID)
}

func (t *turnRelay) stop() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.server != nil {
		t.server.Close()
		t.server, t.provider = nil, nil
	}
}

// startTURN sets up TURN for the config's federation mode (start).
func (d *Daemon) startTURN(sec secrets.Store) (*turnRelay, error) {
	t := &turnRelay{cfg: d.cfg, secrets: sec}
	if err := t.apply(d.cfg.Federation); err != nil {
		return nil, err
	}
	return t, nil
}

// followFederation restarts the built-in relay for a federation mode the
// control API switched to: off closes it (under turn = auto), lan and
// internet open it with their scope. An external server is not touched.
func (t *turnRelay) followFederation(mode string) {
	if t == nil || len(splitList(t.cfg.TURNURIs)) > 0 {
		return
	}
	t.mu.Lock()
	same := t.mode == mode
	t.mu.Unlock()
	if same {
		return
	}
	t.stop()
	if err := t.apply(mode); err != nil {
		slog.Warn("TURN: the relay did not restart for the new federation mode; calls may need a relay elsewhere", "mode", mode, "err", err)
	}
}

// apply starts the built-in relay when the config wants it under the
// federation mode given, or points clients at the external server of
// turn_uris. The relay serves where federation listens: every address in
// lan and internet mode (lan admits clients and relays to peers on this
// machine's networks only, internet also to public addresses), loopback
// when federation is off and turn = on.
func (t *turnRelay) apply(fedMode string) error {
	cfg := t.cfg
	ttl := time.Duration(cfg.TURNUserLifetime) * time.Second
	t.mu.Lock()
	t.mode = fedMode
	t.mu.Unlock()
	if uris := splitList(cfg.TURNURIs); len(uris) > 0 {
		slog.Info("TURN: clients use the external server", "uris", strings.Join(uris, ","))
		t.mu.Lock()
		t.provider = turn.External{URIs: uris, Secret: []byte(cfg.TURNSharedSecret), TTL: ttl}
		t.mu.Unlock()
		return nil
	}
	if cfg.TURN == TURNOff || cfg.TURN == TURNAuto && fedMode == FederationOff {
		return nil
	}
	secret, err := loadOrCreateTURNSecret(t.secrets)
	if err != nil {
		return err
	}
	allow, err := resolve.ParseNetworks(splitList(cfg.TURNAllowNetworks))
	if err != nil {
		return fmt.Errorf("turn_allow_networks: %w", err)
	}
	listen := cfg.TURNListen
	if listen == "" {
		listen = fmt.Sprintf(":%d", turn.DefaultPort)
		if fedMode == FederationOff {
			listen = fmt.Sprintf("127.0.0.1:%d", turn.DefaultPort)
		}
	}
	bw := cfg.TURNBandwidth
	if bw == 0 {
		bw = -1 // no limit
	}
	scope := turn.Scope{Allow: allow, Internet: fedMode == FederationInternet}
	if fedMode != FederationOff {
		scope.LocalNets = interfaceNets
	}
	srv, err := turn.Start(turn.Config{Secret: secret, TTL: ttl, Realm: cfg.ServerName, Listen: listen,
		AnyPortIfTaken: cfg.TURNListen == "", Avoid: listenPorts(cfg.ClientListen, cfg.FederationListen),
		Scope: scope, BandwidthBytes: bw})
	if err != nil {
		return err
	}
	slog.Info("TURN relay is on", "listen", listen, "port", srv.Port(), "federation", fedMode)
	t.mu.Lock()
	t.provider, t.server = srv, srv
	t.mu.Unlock()
	return nil
}

// loadOrCreateTURNSecret reads the relay's shared secret, making 32
// random bytes the first time.
func loadOrCreateTURNSecret(store secrets.Store) ([]byte, error) {
	s, err := store.Get(turnSecretName)
	if err == nil {
		b, err := base64.RawStdEncoding.DecodeString(strings.TrimSpace(s))
		if err != nil || len(b) < 16 {
			return nil, fmt.Errorf("the TURN secret in %s is damaged; remove it to make a new one", store.Where())
		}
		return b, nil
	}
	if !errors.Is(err, secrets.ErrNotFound) {
		return nil, fmt.Errorf("read the TURN secret: %w", err)
	}
	b := make([]byte, 32)
	rand.Read(b)
	if err := store.Set(turnSecretName, base64.RawStdEncoding.EncodeToString(b)); err != nil {
		return nil, fmt.Errorf("store the TURN secret: %w", err)
	}
	return b, nil
}

// listenPorts are the ports of the given listen addresses that name one.
func listenPorts(addrs ...string) []int {
	var ports []int
	for _, a := range addrs {
		if _, p, err := net.SplitHostPort(a); err == nil {
			if n, err := strconv.Atoi(p); err == nil && n != 0 {
				ports = append(ports, n)
			}
		}
	}
	return ports
}
