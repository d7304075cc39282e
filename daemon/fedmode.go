package daemon

import (
	"encoding/base64"
	"fmt"
	"log/slog"

	"github.com/hearth-chat/hearth/localapi/control"
)

// Addr is the federation listener's address: the one it is bound to
// (port 0 resolved), or the configured one before it first listened.
func (f *fed) Addr() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.listener != nil {
		return f.listener.Addr().String()
	}
	return f.addr
}

// federationModeStatus is the part of GET /_hearth/v1/federation that
// says which mode is in force and which one the config file asks for.
func (d *Daemon) federationModeStatus() control.FederationStatus {
	st := control.FederationStatus{Mode: FederationOff, Destinations: []control.Destination{}}
	if f := d.fed; f != nil {
		st.Mode, st.Listen = f.Mode(), f.Addr()
		st.CertificateSHA256 = base64.RawStdEncoding.EncodeToString(f.certSPKI[:])
	}
	st.Enabled = st.Mode != FederationOff
	d.fedModeMu.Lock()
	st.Configured = d.fedModeWanted
	d.fedModeMu.Unlock()
	if st.Configured == "" {
		st.Configured = d.cfg.Federation
	}
	st.RestartRequired = st.Configured != st.Mode
	return st
}

// SetFederationMode answers POST /_hearth/v1/federation/mode: it checks
// the mode as a start would (internet needs tls_cert and tls_key), writes
// federation = mode to the config file, and applies it at once when
// federation was set up at start (lan, internet or off from there). A
// federation that was off at start was never built, so switching it on
// needs a restart, which the status then says.
func (b *controlBackend) SetFederationMode(mode string) error {
	next := b.d.cfg
	next.Federation = mode
	if err := next.Validate(); err != nil {
		return control.BadRequest("mode", err.Error())
	}
	if err := writeConfigValue(b.d.cfg.File, "federation", mode); err != nil {
		return fmt.Errorf("write the config: %w", err)
	}
	b.d.fedModeMu.Lock()
	b.d.fedModeWanted = mode
	b.d.fedModeMu.Unlock()
	if b.d.fed == nil {
		if mode != FederationOff {
			slog.Info("federation mode stored; it applies when Hearth restarts (federation was off at start)", "mode", mode)
		}
		return nil
	}
	if err := b.d.fed.setMode(mode); err != nil {
		return err
	}
	b.d.turn.followFederation(mode) // the relay listens where federation does (turn.go)
	return nil
}
