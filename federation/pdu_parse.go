package federation

import (
	"bytes"
	"crypto/sha256"
	"slices"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/hearth-chat/hearth/internal/room"
)

// Parsing an inbound event, once.
//
// parseSigned used to run gomatrixserverlib's untrusted parse (canonical
// check, keys stripped, encoding/json into its event, the event made
// canonical, content hash), then redact the event for its signing bytes
// (encoding/json into a struct and out again, canonical JSON once more),
// then parse it a second time only to set the event ID computed from
// those bytes: about a fifth of hs1's CPU while ingesting
// (docs/performance.md "Federation ingest: fifth round").
//
// parseCanonical does the same in one pass for the events a peer sends
// most — events whose redaction empties the content (not a type listed
// by room.RedactionKeepsContent), sent as canonical JSON already (a
// gomatrixserverlib peer's, a Hearth's), in a room version whose event
// IDs are reference hashes — and answers ok false for anything else,
// which then takes gomatrixserverlib's path as before:
//
//   - gomatrixserverlib's own checks run as they did: the keys a server
//     must strip (removed with sjson as it does), the event parsed once
//     by NewEventFromTrustedJSONWithEventID on the very bytes its
//     untrusted parse would have kept, and CheckFields. Its canonical-JSON
//     rules on numbers (CheckCanonicalJSON) hold for any JSON canonical
//     already (TestCanonicalAlreadyPassesCheckCanonicalJSON).
//   - With the event canonical already (room.CanonicalAlready: no
//     whitespace, keys sorted and unique at every depth, no escapes), its
//     top-level members are the canonical form's, in order. The content
//     hash (Server-Server API §"Calculating the content hash for an
//     event") is the SHA-256 of them without "signatures", "unsigned" and
//     "hashes"; a mismatch goes to gomatrixserverlib, which redacts.
//   - The signing bytes (§"Signing events"; also what the reference hash
//     covers) are the same members without "signatures" and "unsigned",
//     only the top-level keys the version's redaction keeps (asked of
//     gomatrixserverlib once per version, redactionKeys), and "content"
//     as {} (Client-Server API §"Redactions").
//
// Where gomatrixserverlib's encoding/json would not give these bytes back
// unchanged — a top-level key that is not plain lower-case ASCII (it
// matches struct fields case-insensitively), a top-level "_" key, a type
// that is not a plain string, '<', '>', '&' or non-ASCII in what is kept
// (it escapes them), content that is not an object — the event goes to
// gomatrixserverlib. TestParseCanonicalAgreesWithGomatrixserverlib holds
// the result (event JSON, event ID, signing bytes, errors) to
// gomatrixserverlib's for every room version, over plain and tampered
// events, and FuzzParseCanonical over mutations of them.

// strippedKeys are the keys gomatrixserverlib's untrusted parse removes
// from an event before anything else (a sending server may have added
// them).
var strippedKeys = []string{"outlier", "destinations", "age_ts", "unsigned", "event_id"}

// parseCanonical parses raw as an event of version ver, as
// NewEventFromUntrustedJSON followed by signingBytes and withEventID
// would; ok is false when it does not apply (or anything fails), and the
// caller must take that path instead.
func parseCanonical(ver gomatrixserverlib.IRoomVersion, raw []byte) (pdu gomatrixserverlib.PDU, signed []byte, ok bool) {
	kept := redactionKeys(ver)
	if kept == nil {
		return nil, nil, false
	}
	// JSON canonical already passes every version's canonical-JSON check
	// (integers of at most 15 digits, no fractions or exponents, no -0:
	// TestCanonicalAlreadyPassesCheckCanonicalJSON), which therefore is
	// not run again.
	if len(raw) == 0 || raw[0] != '{' || !room.CanonicalAlready(raw) {
		return nil, nil, false
	}
	event := raw
	m, ok := walkEvent(event, kept)
	if !ok {
		return nil, nil, false
	}
	if m.strip {
		for _, k := range strippedKeys {
			var err error
			if event, err = sjson.DeleteBytes(event, k); err != nil {
				return nil, nil, false
			}
		}
		if !room.CanonicalAlready(event) {
			return nil, nil, false
		}
		if m, ok = walkEvent(event, kept); !ok || m.strip {
			return nil, nil, false
		}
	}
	hashable, signed := m.hashable, m.signed
	var hash spec.Base64Bytes
	if hash.Decode(m.sha) != nil {
		return nil, nil, false
	}
	if sum := sha256.Sum256(hashable); !bytes.Equal(sum[:], hash) {
		return nil, nil, false // gomatrixserverlib redacts it
	}
	id, idOK := room.ReferenceEventID(ver, signed)
	if !idOK {
		return nil, nil, false
	}
	pdu, err := ver.NewEventFromTrustedJSONWithEventID(id, event, false)
	if err != nil || gomatrixserverlib.CheckFields(pdu) != nil {
		return nil, nil, false
	}
	return pdu, signed, true
}

// plainKey reports whether k is made of lower-case ASCII letters, digits
// and '_' only: encoding/json matches such a key to a struct field only
// when it is the field's name exactly.
func plainKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// plainValue reports whether encoding/json writes the canonical JSON v
// back unchanged: no byte it escapes in strings ('<', '>', '&', U+2028
// and U+2029 — any non-ASCII byte is refused here, to be brief).
func plainValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '<' || c == '>' || c == '&' || c >= 0x80 {
			return false
		}
	}
	return true
}

// redactionKeys returns the top-level keys ver's redaction algorithm keeps
// of an event whose content it empties (room.RedactionKeys); nil if the
// version is not one parseCanonical handles.
func redactionKeys(ver gomatrixserverlib.IRoomVersion) map[string]bool {
	if ver.EventFormat() != gomatrixserverlib.EventFormatV2 || ver.StateDAGs() ||
		ver.Version() == gomatrixserverlib.RoomVersionPseudoIDs {
		return nil
	}
	if _, ok := room.ReferenceEventID(ver, nil); !ok {
		return nil
	}
	return room.RedactionKeys(ver)
}

// eventMembers is what walkEvent reads of an event.
type eventMembers struct {
	hashable []byte // what the content hash covers
	signed   []byte // what signatures and the reference hash cover
	sha      string // hashes.sha256
	strip    bool   // a top-level key of strippedKeys is present
}

// walkEvent reads the top-level members of event, canonical JSON already,
// in order (see parseCanonical); ok is false if the short path does not
// apply to it.
func walkEvent(event []byte, kept map[string]bool) (m eventMembers, ok bool) {
	m.hashable = make([]byte, 1, len(event))
	m.hashable[0] = '{'
	m.signed = make([]byte, 1, len(event))
	m.signed[0] = '{'
	member := func(b []byte, key, value string) []byte {
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(b, key...)
		b = append(b, ':')
		return append(b, value...)
	}
	var evType string
	content, fine := false, true
	gjson.ParseBytes(event).ForEach(func(key, value gjson.Result) bool {
		k := key.Str
		if !plainKey(k) || k[0] == '_' {
			fine = false
			return false
		}
		if slices.Contains(strippedKeys, k) {
			m.strip = true // parseCanonical strips them and walks again
			return true
		}
		switch k {
		case "signatures":
			return true
		case "hashes":
			m.sha = value.Get("sha256").Str // no duplicate keys: gjson's first is the only one
		default:
			m.hashable = member(m.hashable, key.Raw, value.Raw)
		}
		switch {
		case k == "content":
			if !value.IsObject() {
				fine = false
				return false
			}
			content = true
			m.signed = member(m.signed, key.Raw, "{}")
		case !kept[k]:
		case !plainValue(value.Raw):
			fine = false
			return false
		default:
			if k == "type" {
				if value.Type != gjson.String {
					fine = false
					return false
				}
				evType = value.Str
			}
			m.signed = member(m.signed, key.Raw, value.Raw)
		}
		return true
	})
	if !fine || !content || evType == "" || room.RedactionKeepsContent(evType) {
		return m, false
	}
	m.hashable = append(m.hashable, '}')
	m.signed = append(m.signed, '}')
	return m, true
}
