package federation

import (
	"context"
	"crypto/ed25519"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"

	"github.com/hearth-chat/hearth/internal/room"
)

// A request's X-Matrix signature covers the JSON object {"content":
// body, "destination", "method", "origin", "uri"} in canonical JSON
// (Server-Server API §"Request Authentication"). fclient.VerifyHTTPRequest
// builds it with encoding/json, and the key ring's check unmarshals it
// twice, marshals it back and makes it canonical again: for a transaction
// of 50 events that was about 8 % of hs1's CPU while ingesting, against
// under 0.5 % for the ed25519 check itself (docs/performance.md
// "Federation ingest: fifth round").
//
// verifyRequestSig makes those bytes once — the body's top-level members
// sorted, when each of them is canonical JSON already (room.CanonicalAlready),
// as a gomatrixserverlib or Hearth peer's transaction's are, or else
// gomatrixserverlib.CanonicalJSON of the body — and accepts the request
// when its one X-Matrix signature verifies over them with the origin's
// key from the key ring's database, valid now (the strict rule the
// request check uses). Anything else — no such key, a bad signature,
// several Authorization headers, a field it would have to escape — goes
// to fclient.VerifyHTTPRequest as before, which fetches keys and gives
// the error. TestVerifyRequestSigAgreesWithGomatrixserverlib holds it to
// that function's verdict.

// verifyRequestSig returns the request's authenticated form if its
// signature verifies as described above; ok false means "ask
// fclient.VerifyHTTPRequest".
func verifyRequestSig(ctx context.Context, r *http.Request, body []byte, now time.Time, self spec.ServerName,
	ring *gomatrixserverlib.KeyRing) (fr *fclient.FederationRequest, ok bool) {
	if ring == nil || ring.KeyDatabase == nil || len(body) == 0 || len(r.Header.Values("Authorization")) != 1 {
		return nil, false
	}
	scheme, origin, destination, keyID, sig64 := fclient.ParseAuthorization(r.Header.Get("Authorization"))
	if scheme != "X-Matrix" || origin == "" || keyID == "" || sig64 == "" {
		return nil, false
	}
	if destination == "" {
		destination = self
	}
	if destination != self || !validServerName(origin) {
		return nil, false
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" || !utf8.Valid(body) {
		return nil, false
	}
	method, uri := r.Method, r.URL.RequestURI()
	for _, s := range []string{string(destination), method, string(origin), uri} {
		if !plainString(s) {
			return nil, false
		}
	}
	content, ok := canonicalBody(body)
	if !ok {
		return nil, false
	}
	var sig spec.Base64Bytes
	if sig.Decode(sig64) != nil || len(sig) != ed25519.SignatureSize {
		return nil, false
	}
	req := gomatrixserverlib.PublicKeyLookupRequest{ServerName: origin, KeyID: keyID}
	ts := spec.AsTimestamp(now)
	keys, err := ring.KeyDatabase.FetchKeys(ctx, map[gomatrixserverlib.PublicKeyLookupRequest]spec.Timestamp{req: ts})
	if err != nil {
		return nil, false
	}
	key, found := keys[req]
	if !found || len(key.Key) != ed25519.PublicKeySize || !key.WasValidAt(ts, gomatrixserverlib.StrictValiditySignatureCheck) {
		return nil, false
	}
	signed := make([]byte, 0, len(content)+len(destination)+len(method)+len(origin)+len(uri)+64)
	signed = append(signed, `{"content":`...)
	signed = append(signed, content...)
	signed = append(signed, `,"destination":"`...)
	signed = append(signed, destination...)
	signed = append(signed, `","method":"`...)
	signed = append(signed, method...)
	signed = append(signed, `","origin":"`...)
	signed = append(signed, origin...)
	signed = append(signed, `","uri":"`...)
	signed = append(signed, uri...)
	signed = append(signed, `"}`...)
	if !ed25519.Verify(ed25519.PublicKey(key.Key), signed, sig) {
		return nil, false
	}
	req2 := fclient.NewFederationRequest(method, origin, destination, uri)
	return &req2, true
}

// plainString reports whether s is written in canonical JSON as itself
// between quotes, and by encoding/json the same way: printable ASCII
// without '"', '\' or the bytes encoding/json escapes for HTML.
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// canonicalBody returns body in canonical JSON: its top-level members
// sorted by key when body is an object whose keys are plain and whose
// values are each canonical already (a transaction marshalled from a
// struct around events in canonical form), and otherwise
// gomatrixserverlib's canonical JSON of it.
func canonicalBody(body []byte) ([]byte, bool) {
	if out, ok := sortedMembers(body); ok {
		return out, true
	}
	out, err := gomatrixserverlib.CanonicalJSON(body)
	return out, err == nil
}

func sortedMembers(body []byte) ([]byte, bool) {
	if len(body) == 0 || body[0] != '{' || !gjson.ValidBytes(body) {
		return nil, false
	}
	type member struct{ name, key, raw string }
	var members []member
	ok := true
	gjson.ParseBytes(body).ForEach(func(key, value gjson.Result) bool {
		if key.Raw != `"`+key.Str+`"` || !plainString(key.Str) || !room.CanonicalAlready([]byte(value.Raw)) {
			ok = false
			return false
		}
		members = append(members, member{key.Str, key.Raw, value.Raw})
		return true
	})
	if !ok {
		return nil, false
	}
	// Canonical JSON orders keys by code point: byte order, for ASCII.
	slices.SortFunc(members, func(a, b member) int { return strings.Compare(a.name, b.name) })
	out := make([]byte, 0, len(body))
	out = append(out, '{')
	for i, m := range members {
		if i > 0 {
			if m.name == members[i-1].name {
				return nil, false // a duplicate key: gomatrixserverlib decides
			}
			out = append(out, ',')
		}
		out = append(out, m.key...)
		out = append(out, ':')
		out = append(out, m.raw...)
	}
	return append(out, '}'), true
}
