package discovery

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
)

// The certificate binding (issue 11, "trust without certificate
// authorities"). A LAN peer's federation listener serves a self-signed
// certificate; no CA vouches for it. Its announcement instead carries the
// SHA-256 of the certificate's SubjectPublicKeyInfo (the RFC 7469 §2.4
// form) and an ed25519 signature of it by the server's Matrix signing
// key, the key the TOFU pin holds. So the certificate is trusted exactly
// as far as the pinned signing key is: a LAN host that announces someone
// else's name cannot bind its own certificate without that server's
// signing key, and a TLS server presenting another key than the bound
// one is refused by the outbound transport (federation/resolve).
//
// The signed message is domain-separated, so the signature can never be
// mistaken for a signature of Matrix JSON (which never starts with this
// prefix and has no NUL) and binds the server name as well as the key:
//
//	"hearth-lan-tls-v1" 0x00 server_name 0x00 spki_sha256 (32 bytes)
const (
	bindingContext = "hearth-lan-tls-v1"
	// TXTCertKey and TXTCertSig are the TXT keys of the binding.
	TXTCertKey = "tls"
	TXTCertSig = "tlssig"
)

// bindingMessage is what the signing key signs.
func bindingMessage(serverName string, spki [sha256.Size]byte) []byte {
	m := make([]byte, 0, len(bindingContext)+len(serverName)+2+len(spki))
	m = append(m, bindingContext...)
	m = append(m, 0)
	m = append(m, serverName...)
	m = append(m, 0)
	return append(m, spki[:]...)
}

// BindingTXT is the TXT fields binding the federation certificate whose
// SubjectPublicKeyInfo hashes to spki to serverName's signing key priv;
// the daemon puts them in Config.TXT.
func BindingTXT(serverName string, spki [sha256.Size]byte, priv ed25519.PrivateKey) []string {
	sig := ed25519.Sign(priv, bindingMessage(serverName, spki))
	return []string{
		TXTCertKey + "=" + base64.RawStdEncoding.EncodeToString(spki[:]),
		TXTCertSig + "=" + base64.RawStdEncoding.EncodeToString(sig),
	}
}

var errNoBinding = errors.New("no certificate binding")

// verifyBinding checks the binding in an announcement's extra TXT fields
// against its server name and announced signing key (unpadded base64) and
// returns the bound SPKI hash. Anything malformed is an error, never a
// panic: the fields come from whoever is on the LAN (FuzzBinding).
func verifyBinding(serverName, key string, txt map[string]string) ([sha256.Size]byte, error) {
	var spki [sha256.Size]byte
	h, s := txt[TXTCertKey], txt[TXTCertSig]
	if h == "" && s == "" {
		return spki, errNoBinding
	}
	pub, err := base64.RawStdEncoding.DecodeString(key)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return spki, errors.New("the announced signing key is not an ed25519 public key")
	}
	hash, err := base64.RawStdEncoding.DecodeString(h)
	if err != nil || len(hash) != sha256.Size {
		return spki, fmt.Errorf("%s is not an unpadded base64 SHA-256", TXTCertKey)
	}
	sig, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return spki, fmt.Errorf("%s is not an unpadded base64 ed25519 signature", TXTCertSig)
	}
	copy(spki[:], hash)
	if !ed25519.Verify(ed25519.PublicKey(pub), bindingMessage(serverName, spki), sig) {
		return [sha256.Size]byte{}, errors.New("the certificate binding is not signed by the announced key")
	}
	return spki, nil
}
