package e2ee

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// invalidSignature is the spec's M_INVALID_SIGNATURE (400).
func invalidSignature(msg string) *matrixerr.Error {
	return &matrixerr.Error{Status: http.StatusBadRequest, Code: "M_INVALID_SIGNATURE", Message: msg}
}

// unpaddedBase64 decodes Matrix's unpadded base64, tolerating padding.
func unpaddedBase64(s string) ([]byte, error) {
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
}

// verifySignature checks an ed25519 signature over a signed JSON object as
// the spec's §"Signing JSON" defines it: the canonical JSON of the object
// without its signatures and unsigned members. pub and sig are unpadded
// base64.
func verifySignature(object []byte, pub, sig string) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(object, &m) != nil {
		return false
	}
	delete(m, "signatures")
	delete(m, "unsigned")
	b, err := json.Marshal(m)
	if err != nil {
		return false
	}
	canonical, err := gomatrixserverlib.CanonicalJSON(b)
	if err != nil {
		return false
	}
	key, err := unpaddedBase64(pub)
	if err != nil || len(key) != ed25519.PublicKeySize {
		return false
	}
	s, err := unpaddedBase64(sig)
	if err != nil || len(s) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(key, canonical, s)
}

// signingKey finds the public key behind a signer's key ID "ed25519:X": X
// names one of the signer's devices (its ed25519 device key) or is one of
// the signer's cross-signing public keys.
func signingKey(tx *store.Tx, signer, keyID string) string {
	alg, x, ok := strings.Cut(keyID, ":")
	if !ok || alg != "ed25519" || strings.IndexByte(x, 0) >= 0 {
		return ""
	}
	if raw := tx.Get(store.DeviceKeys, store.Key(signer, x)); raw != nil {
		var dk deviceKeys
		if json.Unmarshal(raw, &dk) == nil {
			return dk.Keys["ed25519:"+x]
		}
	}
	for _, kind := range []string{master, selfSigning, userSigning} {
		if v := tx.Get(store.CrossSigning, store.Key(signer, kind)); v != nil && publicKey(v) == x {
			return x
		}
	}
	return ""
}
