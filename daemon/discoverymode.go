package daemon

import (
	"fmt"
	"log/slog"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/localapi/control"
)

// lanDiscoveryMode is the lan_discovery mode in force.
func (d *Daemon) lanDiscoveryMode() string {
	d.lanMu.Lock()
	defer d.lanMu.Unlock()
	return d.lanMode
}

// Discovery answers GET /_hearth/v1/discovery.
func (b *controlBackend) Discovery() control.DiscoveryStatus {
	return control.DiscoveryStatus{Mode: b.d.lanDiscoveryMode(), Running: b.d.lanService() != nil}
}

// SetDiscoveryMode answers POST /_hearth/v1/discovery/mode: it checks the
// mode as a start would, writes lan_discovery = mode to the config file
// and applies it at once (setDiscoveryMode).
func (b *controlBackend) SetDiscoveryMode(mode string) error {
	next := b.d.cfg
	next.LANDiscovery = mode
	if err := next.Validate(); err != nil {
		return control.BadRequest("mode", err.Error())
	}
	if err := writeConfigValue(b.d.cfg.File, "lan_discovery", mode); err != nil {
		return fmt.Errorf("write the config: %w", err)
	}
	b.d.setDiscoveryMode(mode)
	return nil
}

// setDiscoveryMode stops LAN discovery in place and starts it again in
// mode. Stopping sends the goodbyes (peers drop us within a second) and
// takes out the routes discovery gave federation (putting back those of
// federation_servers), so a LAN peer is then reached only through
// federation_servers or DNS, as with discovery off
// at start; starting announces (on) and browses (on, browse) from
// scratch, as at start. Pins stay in the store either way.
func (d *Daemon) setDiscoveryMode(mode string) {
	d.lanSwitchMu.Lock()
	defer d.lanSwitchMu.Unlock()
	if d.lanDiscoveryMode() == mode {
		return
	}
	d.lanMu.Lock()
	old := d.lan
	d.lan = nil
	d.lanMu.Unlock()
	if old != nil {
		old.Stop()
		d.nearby.lan.Store(nil)
		if d.fed != nil {
			fixed, _ := parseServerTable(d.cfg.FederationServers)
			for _, p := range old.Peers() {
				if p.Routable() {
					d.fed.resolver.SetStatic(spec.ServerName(p.ServerName), fixed[p.ServerName])
					d.fed.resolver.Reconnect(p.ServerName)
				}
			}
			d.fed.resolver.SetCertPins(nil)
		}
	}
	d.startDiscovery(mode)
	slog.Info("LAN discovery switched", "mode", mode, "running", d.lanService() != nil)
}
