package resolve

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// CertPins says which TLS certificate key a LAN peer must present (issue
// 11, "trust without certificate authorities"). LAN discovery implements
// it: a LAN peer's self-signed certificate is trusted because its
// announcement binds the certificate's key to the signing key pinned for
// its server name, not because a CA signed it. Public names have no pin
// and keep the CA rules.
type CertPins interface {
	// PinnedSPKI is the SHA-256 of the SubjectPublicKeyInfo (RFC 7469
	// §2.4) the server must present; false: no pin, normal CA rules.
	PinnedSPKI(serverName string) ([sha256.Size]byte, bool)
}

// SetCertPins makes static routes (the LAN's) check certificates against
// pins: consulted at each handshake, so a pin that changes or goes takes
// effect on the next connection.
func (r *Resolver) SetCertPins(p CertPins) {
	r.mu.Lock()
	r.pins = p
	r.mu.Unlock()
	r.tr.forget() // pools made before checked certificates without pins
}

func (r *Resolver) certPins() CertPins {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pins
}

// ErrCertNotPinned: a LAN peer presented a certificate whose key is not
// the one its announcement bound to its signing key.
var ErrCertNotPinned = errors.New("the certificate's key is not the one the server's signing key vouches for")

// pinnedTLSConfig is the TLS configuration for a static route to server:
// when pins has a certificate key for it, the leaf certificate's key must
// be that one and neither its issuer, name nor dates matter (a LAN peer's
// certificate is self-signed and long-lived); otherwise the usual
// verification against the roots and tlsName. The standard verification
// is off (InsecureSkipVerify) only because VerifyConnection does it
// instead, one way or the other, on every handshake, resumed ones included.
func (r *Resolver) pinnedTLSConfig(pins CertPins, server, tlsName string) *tls.Config {
	c := r.TLSConfig()
	c.ServerName = tlsName
	roots := c.RootCAs
	c.InsecureSkipVerify = true
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("resolve: no server certificate")
		}
		leaf := cs.PeerCertificates[0]
		if want, ok := pins.PinnedSPKI(server); ok {
			if got := sha256.Sum256(leaf.RawSubjectPublicKeyInfo); !bytes.Equal(got[:], want[:]) {
				return fmt.Errorf("resolve: %s: %w", server, ErrCertNotPinned)
			}
			return nil
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: tlsName})
		return err
	}
	return c
}

// Reconnect ends every connection of server's static route, requests in
// flight included, so the next request dials afresh. LAN discovery calls
// it when a peer comes back (a cable put back, a restart): a connection
// made before may be dead without either side knowing, and a request
// stuck on it would wait for its timeout instead of going now.
func (r *Resolver) Reconnect(server string) {
	r.tr.dropServer(server)
}
