package daemon

import (
	"crypto/tls"
	"fmt"

	"github.com/hearth-chat/hearth/internal/secrets"
)

// Key store modes (config key key_store); internal/secrets keeps the
// secrets.
const (
	KeyStoreAuto    = secrets.ModeAuto    // the OS keyring when one answers, else a 0600 file
	KeyStoreKeyring = secrets.ModeKeyring // the OS keyring or refuse to start
	KeyStoreFile    = secrets.ModeFile    // a 0600 file in the data dir
)

// openSecrets opens the secret store cfg names (data_dir, key_store).
func openSecrets(cfg Config) (secrets.Store, string, error) {
	return secrets.Open(cfg.DataDir, cfg.KeyStore)
}

// federationCert is the federation listener's certificate: the configured
// tls_cert/tls_key when set, else (lan mode) the self-signed one from the
// secret store. Config.Validate has refused internet mode without a
// configured certificate.
func federationCert(cfg Config, store secrets.Store) (tls.Certificate, error) {
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("federation TLS certificate: %w", err)
		}
		return cert, nil
	}
	if cfg.Federation != FederationLAN {
		return tls.Certificate{}, fmt.Errorf("federation = %s needs tls_cert and tls_key", cfg.Federation)
	}
	cert, _, err := secrets.LoadOrCreateTLSCert(store, cfg.ServerName)
	return cert, err
}

// certKind says, for the start log, which certificate federation serves.
func certKind(cfg Config) string {
	if cfg.TLSCert != "" {
		return cfg.TLSCert
	}
	return "self-signed, kept with the signing key (LAN peers trust it through the signing key, not a CA)"
}

// tlsPublicKey is the SHA-256 of the federation certificate's public key
// (SubjectPublicKeyInfo), for the LAN announcement to bind to the signing
// key; ok is false while federation is off.
func (d *Daemon) tlsPublicKey() (spki [32]byte, ok bool) {
	if d.fed == nil {
		return spki, false
	}
	return d.fed.certSPKI, true
}
