package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fedNet is a set of daemons that federate with each other over loopback
// TLS. Each has its own server name, bbolt file and federation listener;
// their certificates come from a CA made for the test, which every daemon
// trusts through ca_file, and the static server table (federation_servers)
// maps each name to its listener, as LAN discovery would.
type fedNet struct {
	t       *testing.T
	dir     string
	caFile  string
	caKey   *ecdsa.PrivateKey
	caCert  *x509.Certificate
	addrs   map[string]string // server name → federation listener
	Daemons map[string]*Daemon
}

// loopbackNetworks lets test daemons federate over loopback by any name,
// not only through the static table: the default address policy refuses
// loopback (federation/resolve/policy.go).
const loopbackNetworks = "127.0.0.0/8,::1/128"

// newFedNet prepares daemons for names without starting them.
func newFedNet(t *testing.T, names ...string) *fedNet {
	t.Helper()
	n := &fedNet{t: t, dir: t.TempDir(), addrs: map[string]string{}, Daemons: map[string]*Daemon{}}
	n.makeCA()
	for _, name := range names {
		n.addrs[name] = freeAddr(t)
	}
	var table []string
	for _, name := range names {
		table = append(table, name+"="+n.addrs[name])
	}
	for _, name := range names {
		cert, key := n.issue(name)
		d := NewDaemon(t, t.TempDir())
		d.Name = name
		d.Extra = []string{"--federation-listen", n.addrs[name], "--tls-cert", cert, "--tls-key", key,
			"--ca-file", n.caFile, "--federation-servers", strings.Join(table, ","),
			"--federation-allow-networks", loopbackNetworks}
		n.Daemons[name] = d
	}
	return n
}

// startFedNet starts a network of daemons.
func startFedNet(t *testing.T, names ...string) *fedNet {
	n := newFedNet(t, names...)
	for _, name := range names {
		n.Daemons[name].Start()
	}
	return n
}

func (n *fedNet) makeCA() {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	noErr(n.t, err, "CA key")
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Hearth test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	noErr(n.t, err, "CA certificate")
	n.caCert, err = x509.ParseCertificate(der)
	noErr(n.t, err, "parse CA certificate")
	n.caKey = key
	n.caFile = filepath.Join(n.dir, "ca.pem")
	n.writePEM(n.caFile, "CERTIFICATE", der)
}

// issue makes a server certificate for name and returns its files.
func (n *fedNet) issue(name string) (certFile, keyFile string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	noErr(n.t, err, "server key")
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, n.caCert, &key.PublicKey, n.caKey)
	noErr(n.t, err, "server certificate")
	keyDER, err := x509.MarshalECPrivateKey(key)
	noErr(n.t, err, "marshal key")
	certFile = filepath.Join(n.dir, name+".pem")
	keyFile = filepath.Join(n.dir, name+".key")
	n.writePEM(certFile, "CERTIFICATE", der)
	n.writePEM(keyFile, "EC PRIVATE KEY", keyDER)
	return certFile, keyFile
}

func (n *fedNet) writePEM(path, typ string, der []byte) {
	noErr(n.t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600), "write %s", path)
}
