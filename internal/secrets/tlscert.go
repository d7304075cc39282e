package secrets

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"
)

// TLSCertName is the secret holding the federation listener's
// self-signed certificate and its private key, as one PEM bundle. It is
// kept with the signing key (keyring or 0600 file, store.go) because
// the LAN trust scheme binds the two: a peer accepts this certificate's
// key because the signing key vouches for it.
const TLSCertName = "federation-tls.pem"

// selfSignedValidity is long on purpose: LAN peers trust the certificate's
// public key through the signing key, not its dates, and a certificate
// that expired would change the key peers have pinned.
const selfSignedValidity = 20 * 365 * 24 * time.Hour

// LoadOrCreateTLSCert reads the self-signed federation certificate from
// the secret store, making one for serverName on first use; created
// reports that it did. A stored bundle that does not parse is an error,
// not a reason to make a new one: a new key would look to every peer like
// an impostor.
func LoadOrCreateTLSCert(store Store, serverName string) (cert tls.Certificate, created bool, err error) {
	s, err := store.Get(TLSCertName)
	if errors.Is(err, ErrNotFound) {
		bundle, err := newSelfSignedCert(serverName, time.Now())
		if err != nil {
			return tls.Certificate{}, false, err
		}
		if err := store.Set(TLSCertName, bundle); err != nil {
			return tls.Certificate{}, false, fmt.Errorf("store the federation certificate in %s: %w", store.Where(), err)
		}
		s = bundle
		created = true
	} else if err != nil {
		return tls.Certificate{}, false, fmt.Errorf("read the federation certificate from %s: %w", store.Where(), err)
	}
	cert, err = tls.X509KeyPair([]byte(s), []byte(s))
	if err != nil {
		return tls.Certificate{}, false, fmt.Errorf("federation certificate in %s: %w", store.Where(), err)
	}
	return cert, created, nil
}

// newSelfSignedCert makes an ECDSA P-256 key and a certificate for it
// whose subject alternative name is the server name (an IP address when
// the name is one), and returns both as PEM. P-256 rather than Ed25519:
// every TLS stack a Matrix server may use accepts it.
func newSelfSignedCert(serverName string, now time.Time) (string, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", fmt.Errorf("generate the federation TLS key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return "", fmt.Errorf("certificate serial: %w", err)
	}
	host := serverName
	if h, _, err := net.SplitHostPort(serverName); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host, Organization: []string{"Hearth (self-signed)"}},
		NotBefore:    now.Add(-time.Hour), // a peer whose clock is a little behind still accepts it
		NotAfter:     now.Add(selfSignedValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return "", fmt.Errorf("make the federation certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", fmt.Errorf("encode the federation TLS key: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})) +
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})), nil
}

// SPKISHA256 is the SHA-256 of the leaf certificate's SubjectPublicKeyInfo:
// the value a LAN announcement binds to the signing key, and the one a
// peer compares with what its TLS handshake presents (the same form as
// HTTP public key pinning, RFC 7469 §2.4).
func SPKISHA256(cert tls.Certificate) ([32]byte, error) {
	leaf := cert.Leaf
	if leaf == nil {
		if len(cert.Certificate) == 0 {
			return [32]byte{}, errors.New("no certificate")
		}
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return [32]byte{}, fmt.Errorf("parse the federation certificate: %w", err)
		}
	}
	return sha256.Sum256(leaf.RawSubjectPublicKeyInfo), nil
}
