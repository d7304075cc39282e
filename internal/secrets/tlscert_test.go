package secrets

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestSelfSignedCertKeptWithSecrets: the certificate is made once, in a
// 0600 file beside the signing key when there is no keyring, names the
// server, and is the same one on the next load; a damaged one is an error
// rather than silently replaced (peers pin its key).
func TestSelfSignedCertKeptWithSecrets(t *testing.T) {
	st := FileStore{t.TempDir()}
	cert, created, err := LoadOrCreateTLSCert(st, "box-abcdef.local")
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	fi, err := os.Stat(filepath.Join(st.Dir, TLSCertName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file: %v %v", fi, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.VerifyHostname("box-abcdef.local"); err != nil {
		t.Errorf("certificate does not name the server: %v", err)
	}
	if leaf.NotAfter.Before(time.Now().Add(10 * 365 * 24 * time.Hour)) {
		t.Errorf("certificate expires %v: too soon for a pinned key", leaf.NotAfter)
	}
	again, created, err := LoadOrCreateTLSCert(st, "box-abcdef.local")
	if err != nil || created || !bytes.Equal(again.Certificate[0], cert.Certificate[0]) {
		t.Fatalf("second load made another certificate: created %v, %v", created, err)
	}
	h1, _ := SPKISHA256(cert)
	if h1 != sha256.Sum256(leaf.RawSubjectPublicKeyInfo) {
		t.Fatal("SPKISHA256 is not the hash of the certificate's public key")
	}
	os.WriteFile(filepath.Join(st.Dir, TLSCertName), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n"), 0o600)
	if _, _, err := LoadOrCreateTLSCert(st, "box-abcdef.local"); err == nil {
		t.Fatal("a damaged certificate loaded")
	}
}
