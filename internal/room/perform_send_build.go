package room

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// Building a message event, once.
//
// gomatrixserverlib's EventBuilder.Build marshals the event, then for the
// content hash unmarshals it into a map, re-marshals and canonicalises it;
// to sign it redacts it (through map[string]interface{}), canonicalises
// it again, signs, unmarshals the result to pick out the signatures and
// the event again to put them in, re-marshals and canonicalises the whole;
// then the event ID redacts and canonicalises a third time. A profile of
// 32 senders put that at about a third of the daemon's CPU per message.
//
// For the events sent most — message events of a room version whose event
// IDs are reference hashes (v3 and later) — buildMessage writes the
// canonical JSON (Server-Server API §"Canonical JSON") directly: the
// content canonicalised once, the other fields in key order, then the
// content hash (§"Calculating the content hash for an event"), the
// redacted form (Client-Server API §"Redactions": content emptied, keys
// the version does not keep dropped), one ed25519 signature over it
// (§"Signing events") and the event ID as the SHA-256 of the same bytes
// (§"Calculating the reference hash for an event": the redacted event
// without signatures is what was signed). Everything else — state events,
// redactions, event types whose content redaction keeps, v1/v2 rooms —
// goes through Build. The test TestBuildMessageSameAsGomatrixserverlib
// builds events both ways for every room version and requires the same
// bytes, and gomatrixserverlib to verify the hash, signature and event ID.

// keepsContent lists the event types whose content some room version's
// redaction algorithm keeps in part: their redacted form is not
// "content: {}", so they are built by gomatrixserverlib.
var keepsContent = map[string]bool{
	spec.MRoomCreate: true, spec.MRoomMember: true, spec.MRoomJoinRules: true,
	spec.MRoomPowerLevels: true, spec.MRoomHistoryVisibility: true,
	"m.room.aliases": true, spec.MRoomRedaction: true,
}

// maxSafeInt bounds integers in canonical JSON from room v6 on; Build
// refuses a depth or origin_server_ts outside it, so such an event goes
// through Build (which refuses it, or accepts it in older versions).
const maxSafeInt = 1<<53 - 1

// signEvent builds, hashes and signs eb, on the direct path when it
// applies and through EventBuilder.Build otherwise.
func (e *Engine) signEvent(ver gomatrixserverlib.IRoomVersion, eb *gomatrixserverlib.EventBuilder, now time.Time) (gomatrixserverlib.PDU, error) {
	if pdu, ok, err := buildMessage(ver, eb, now, e.serverName, e.keyID, e.key); ok {
		return pdu, err
	}
	return eb.Build(now, e.serverName, e.keyID, e.key)
}

// buildMessage is Build for a message event (see above); ok is false when
// the event is not one it builds, and the caller must use Build.
func buildMessage(ver gomatrixserverlib.IRoomVersion, eb *gomatrixserverlib.EventBuilder, now time.Time,
	origin spec.ServerName, keyID gomatrixserverlib.KeyID, key ed25519.PrivateKey) (pdu gomatrixserverlib.PDU, ok bool, err error) {
	if eb.StateKey != nil || eb.Redacts != "" || keepsContent[eb.Type] || eb.RoomID == "" ||
		len(eb.Signature) != 0 || len(eb.Unsigned) != 0 || eb.PrevStateEvents != nil ||
		ver.EventFormat() != gomatrixserverlib.EventFormatV2 || ver.StateDAGs() ||
		eb.Depth > maxSafeInt || eb.Depth < -maxSafeInt || now.UnixMilli() > maxSafeInt || now.UnixMilli() < 0 {
		return nil, false, nil
	}
	if _, ok := ReferenceEventID(ver, nil); !ok {
		return nil, false, nil
	}
	prev, ok1 := idList(eb.PrevEvents)
	auth, ok2 := idList(eb.AuthEvents)
	kept := RedactionKeys(ver)
	if !ok1 || !ok2 || kept == nil {
		return nil, false, nil
	}
	keepOrigin := kept["origin"]
	content := []byte(eb.Content)
	if len(content) == 0 {
		content = []byte("{}")
	}
	// The content is the only part a client chose: the version's rules on
	// numbers apply to it, as Build applies them to the whole event.
	if !canonicalAlready(content) { // perform_send_canonical.go
		content, err = gomatrixserverlib.EnforcedCanonicalJSON(content, ver.Version())
		if err != nil {
			return nil, true, err
		}
	}

	// The fields every form shares, each a canonical JSON value.
	w := canonicalWriter{}
	authJSON := w.strings(auth)
	prevJSON := w.strings(prev)
	depth := strconv.AppendInt(nil, eb.Depth, 10)
	originJSON := w.str(string(origin))
	ts := strconv.AppendUint(nil, uint64(spec.AsTimestamp(now)), 10)
	roomJSON := w.str(eb.RoomID)
	senderJSON := w.str(eb.SenderID)
	typeJSON := w.str(eb.Type)
	if w.err != nil {
		return nil, true, w.err
	}

	// The object's keys in sorted order; hashes and signatures take their
	// places only in the forms that have them.
	event := func(content, hashes, signatures []byte, withOrigin bool) []byte {
		b := make([]byte, 0, 256+len(content)+len(authJSON)+len(prevJSON)+len(hashes)+len(signatures))
		b = append(b, `{"auth_events":`...)
		b = append(b, authJSON...)
		b = append(b, `,"content":`...)
		b = append(b, content...)
		b = append(b, `,"depth":`...)
		b = append(b, depth...)
		if hashes != nil {
			b = append(b, `,"hashes":`...)
			b = append(b, hashes...)
		}
		if withOrigin {
			b = append(b, `,"origin":`...)
			b = append(b, originJSON...)
		}
		b = append(b, `,"origin_server_ts":`...)
		b = append(b, ts...)
		b = append(b, `,"prev_events":`...)
		b = append(b, prevJSON...)
		b = append(b, `,"room_id":`...)
		b = append(b, roomJSON...)
		b = append(b, `,"sender":`...)
		b = append(b, senderJSON...)
		if signatures != nil {
			b = append(b, `,"signatures":`...)
			b = append(b, signatures...)
		}
		b = append(b, `,"type":`...)
		b = append(b, typeJSON...)
		return append(b, '}')
	}

	contentHash := sha256.Sum256(event(content, nil, nil, true))
	hashes := fmt.Appendf(nil, `{"sha256":"%s"}`, base64.RawStdEncoding.EncodeToString(contentHash[:]))
	// The redacted form without signatures is both what is signed and
	// what the event ID hashes.
	redacted := event([]byte("{}"), hashes, nil, keepOrigin)
	sig := ed25519.Sign(key, redacted)
	eventID, _ := ReferenceEventID(ver, redacted)
	signatures := w.signatures(string(origin), string(keyID), base64.RawStdEncoding.EncodeToString(sig))
	if w.err != nil {
		return nil, true, w.err
	}
	full := event(content, hashes, signatures, true)
	pdu, err = ver.NewEventFromTrustedJSONWithEventID(eventID, full, false)
	if err != nil {
		return nil, true, err
	}
	return pdu, true, gomatrixserverlib.CheckFields(pdu)
}

// idList returns prev_events or auth_events as event IDs, as Build takes
// them for the v3+ event format; ok is false for any other shape.
func idList(v any) ([]string, bool) {
	switch ids := v.(type) {
	case []string:
		return ids, true
	case nil:
		return nil, true
	}
	return nil, false
}

// redactionKeys caches RedactionKeys: gomatrixserverlib.RoomVersion →
// map[string]bool (nil: not a version the direct paths handle).
var redactionKeys sync.Map

// RedactionKeys returns the top-level keys ver's redaction algorithm
// keeps of an event whose content it empties (Client-Server API
// §"Redactions"), or nil if it does not keep every key a message event of
// the v3+ format has, or keeps content. It is asked of gomatrixserverlib,
// the authority, with a probe event that has every key some version keeps
// and one no version does, rather than kept as a list of versions here:
// buildMessage (whether origin is kept: v11 and later drop it, MSC2176)
// and the federation package's one-pass parse of inbound events
// (federation/pdu_parse.go) write the redacted form from it.
func RedactionKeys(ver gomatrixserverlib.IRoomVersion) map[string]bool {
	if v, ok := redactionKeys.Load(ver.Version()); ok {
		return v.(map[string]bool)
	}
	kept := probeRedactionKeys(ver)
	redactionKeys.Store(ver.Version(), kept)
	return kept
}

func probeRedactionKeys(ver gomatrixserverlib.IRoomVersion) map[string]bool {
	probe := []byte(`{"auth_events":["$a"],"content":{"body":"x"},"depth":2,"event_id":"$e","hashes":{"sha256":"x"},` +
		`"membership":"join","not_kept":1,"origin":"a.example","origin_server_ts":1,"prev_events":["$p"],` +
		`"prev_state":["$s"],"prev_state_events":["$t"],"room_id":"!r:a.example","sender":"@u:a.example",` +
		`"signatures":{"a.example":{"ed25519:1":"x"}},"state_key":"","type":"m.room.message"}`)
	red, err := ver.RedactEventJSON(probe)
	if err != nil {
		return nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(red, &fields); err != nil {
		return nil
	}
	if _, has := fields["not_kept"]; has || string(fields["content"]) != "{}" {
		return nil
	}
	kept := map[string]bool{}
	for k := range fields {
		kept[k] = true
	}
	// Every key a built message event has must survive: the direct paths
	// write exactly that form.
	for _, k := range []string{"auth_events", "depth", "hashes", "origin_server_ts", "prev_events", "room_id", "sender", "type"} {
		if !kept[k] {
			return nil
		}
	}
	return kept
}

// canonicalWriter encodes the strings of an event as canonical JSON; err
// keeps the first failure.
type canonicalWriter struct{ err error }

// str encodes s. Identifiers are plain ASCII and are written as they
// are; anything else goes through encoding/json and gomatrixserverlib's
// canonicalisation, as Build does.
func (w *canonicalWriter) str(s string) []byte {
	plain := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			plain = false
			break
		}
	}
	if plain {
		b := make([]byte, 0, len(s)+2)
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	b, err := json.Marshal(s)
	if err == nil {
		b, err = gomatrixserverlib.CanonicalJSON(b)
	}
	if err != nil && w.err == nil {
		w.err = fmt.Errorf("room: encode %q: %w", s, err)
	}
	return b
}

func (w *canonicalWriter) strings(ss []string) []byte {
	b := []byte{'['}
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, w.str(s)...)
	}
	return append(b, ']')
}

func (w *canonicalWriter) signatures(origin, keyID, sig string) []byte {
	b := append([]byte{'{'}, w.str(origin)...)
	b = append(b, ":{"...)
	b = append(b, w.str(keyID)...)
	b = append(b, ':')
	b = append(b, w.str(sig)...)
	return append(b, "}}"...)
}

// ReferenceEventID is the event ID of an event in a room version whose
// event IDs are reference hashes (v3 and later): the SHA-256 of signed,
// the event redacted and without signatures or unsigned data in canonical
// JSON, in the version's base64 (Server-Server API §"Calculating the
// reference hash for an event"). ok is false for versions whose event IDs
// are a field of the event.
func ReferenceEventID(ver gomatrixserverlib.IRoomVersion, signed []byte) (id string, ok bool) {
	var enc *base64.Encoding
	switch {
	case ver.EventFormat() != gomatrixserverlib.EventFormatV2:
		return "", false
	case ver.EventIDFormat() == gomatrixserverlib.EventIDFormatV2:
		enc = base64.RawStdEncoding
	case ver.EventIDFormat() == gomatrixserverlib.EventIDFormatV3:
		enc = base64.RawURLEncoding
	default:
		return "", false
	}
	sum := sha256.Sum256(signed)
	return "$" + enc.EncodeToString(sum[:]), true
}

// RedactionKeepsContent reports whether some room version's redaction
// algorithm keeps part of the content of an event of type evType
// (keepsContent): for any other type the redacted content is {}. The
// federation package parses inbound events of those other types on its
// own shorter path (federation/pdu_parse.go).
func RedactionKeepsContent(evType string) bool { return keepsContent[evType] }
