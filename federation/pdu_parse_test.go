package federation

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/tidwall/sjson"

	"github.com/hearth-chat/hearth/internal/room"
)

// rehashed returns raw with its content hash computed again (Server-Server
// API §"Calculating the content hash for an event") and in canonical
// JSON, so that a test may add top-level keys to a built event and still
// have gomatrixserverlib take it unredacted.
func rehashed(t testing.TB, raw []byte) []byte {
	t.Helper()
	h := raw
	var err error
	for _, k := range []string{"signatures", "unsigned", "hashes"} {
		if h, err = sjson.DeleteBytes(h, k); err != nil {
			t.Fatal(err)
		}
	}
	if h, err = gomatrixserverlib.CanonicalJSON(h); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(h)
	out, err := sjson.SetBytes(raw, "hashes.sha256", base64.RawStdEncoding.EncodeToString(sum[:]))
	if err != nil {
		t.Fatal(err)
	}
	if out, err = gomatrixserverlib.CanonicalJSON(out); err != nil {
		t.Fatal(err)
	}
	return out
}

// parseVariant is an event to parse and whether parseCanonical must take
// it (in the room versions it handles): the short path has to be used
// for what peers send, and left for what it cannot answer exactly.
type parseVariant struct {
	name   string
	raw    []byte
	taken  bool
	either bool // not asserted: depends on the room version
}

// parseVariants builds events of version ver and variants of them.
func parseVariants(t testing.TB, ver gomatrixserverlib.IRoomVersion, key ed25519.PrivateKey) []parseVariant {
	t.Helper()
	roomID := "!room:peer.test"
	if ver.DomainlessRoomIDs() {
		roomID = "!" + strings.Repeat("A", 43)
	}
	build := func(typ string, stateKey *string, content map[string]any) []byte {
		eb := ver.NewEventBuilder()
		eb.SenderID, eb.RoomID, eb.Type, eb.StateKey = "@bob:peer.test", roomID, typ, stateKey
		eb.PrevEvents, eb.AuthEvents, eb.Depth = []string{"$prev:peer.test"}, []string{"$auth:peer.test"}, 7
		if ver.StateDAGs() {
			eb.PrevStateEvents = &[]string{"$state:peer.test"}
		}
		if err := eb.SetContent(content); err != nil {
			t.Fatal(err)
		}
		pdu, err := eb.Build(time.Now(), "peer.test", "ed25519:p", key)
		if err != nil {
			t.Fatal(err)
		}
		return pdu.JSON()
	}
	set := func(raw []byte, path string, v any) []byte {
		out, err := sjson.SetBytes(raw, path, v)
		if err != nil {
			t.Fatal(err)
		}
		return rehashed(t, out)
	}
	setRaw := func(raw []byte, path, v string) []byte {
		out, err := sjson.SetRawBytes(raw, path, []byte(v))
		if err != nil {
			t.Fatal(err)
		}
		return rehashed(t, out)
	}
	// Keys a sending server may have added: gomatrixserverlib strips
	// them before anything, the content hash included.
	added := func(raw []byte, path, v string) []byte {
		out, err := sjson.SetRawBytes(raw, path, []byte(v))
		if err != nil {
			t.Fatal(err)
		}
		if out, err = gomatrixserverlib.CanonicalJSON(out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	empty := ""
	msg := build("m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "hello"})
	odd := build("m.room.message", nil, map[string]any{"body": "é \"quoted\" <tag> & 😀", "n": 9007199254740991, "nested": map[string]any{"z": 1, "a": []any{true, nil}}})
	plainOdd := build("m.room.message", nil, map[string]any{"body": "<tag> & é 😀", "nested": map[string]any{"z": 1, "a": []any{true, nil}}})
	topic := build("m.room.topic", &empty, map[string]any{"topic": "a topic"})
	member := build("m.room.member", new("@bob:peer.test"), map[string]any{"membership": "join"})
	power := build("m.room.power_levels", &empty, map[string]any{"users": map[string]any{"@bob:peer.test": 100}})
	redaction := build("m.room.redaction", nil, map[string]any{"redacts": "$x:peer.test"})
	custom := build("org.example.thing", nil, map[string]any{"a": 1})

	tampered := bytes.Replace(msg, []byte(`"content":{`), []byte(`"content":{"tampered":1,`), 1)
	tamperedCanonical := bytes.Replace(msg, []byte(`"body":"hello"`), []byte(`"body":"hellp"`), 1)
	spaced := bytes.Replace(msg, []byte(`,"depth":`), []byte(`, "depth": `), 1)
	dupDepth := bytes.Replace(msg, []byte(`,"depth":7`), []byte(`,"depth":7,"depth":8`), 1)
	return []parseVariant{
		{"message", msg, true, false},
		{"message, content to escape", odd, false, false}, // a 16-digit integer: not canonical as the short path checks it
		{"message, '<', '&' and non-ASCII in content", plainOdd, true, false},
		{"topic (state, content emptied)", topic, true, false},
		{"custom type", custom, true, false},
		{"member (content kept)", member, false, false},
		{"power levels (content kept)", power, false, false},
		{"redaction (content kept from v11)", redaction, false, false},
		{"unsigned (stripped)", added(msg, "unsigned", `{"age":5}`), true, false},
		{"event_id, age_ts, outlier, destinations (stripped)", added(added(added(added(msg, "event_id", `"$x:peer.test"`), "age_ts", "1"), "outlier", "true"), "destinations", `["a.test"]`), true, false},
		{"unknown top-level key", set(msg, "zzz", 1), true, false},
		{"top-level membership (kept before v11)", set(msg, "membership", "join"), true, false},
		{"prev_state (kept before v11)", setRaw(msg, "prev_state", `[]`), true, false},
		{"without origin", func() []byte { b, _ := sjson.DeleteBytes(msg, "origin"); return rehashed(t, b) }(), true, false},
		{"hashes with another algorithm", setRaw(msg, "hashes.other", `"x"`), true, false},
		{"upper-case key", set(msg, "Type", "m.room.create"), false, false},
		{"upper-case key, unknown", set(msg, "Zzz", 1), false, false},
		{"'_' key", set(msg, "_x", 1), false, false},
		{"type with '<'", set(msg, "type", "m.<x>"), false, false},
		{"type not a string", setRaw(msg, "type", `1`), false, false},
		{"no type", func() []byte { b, _ := sjson.DeleteBytes(msg, "type"); return rehashed(t, b) }(), false, false},
		{"content a string", setRaw(msg, "content", `"x"`), false, false},
		{"no content", func() []byte { b, _ := sjson.DeleteBytes(msg, "content"); return rehashed(t, b) }(), false, false},
		{"depth a string", setRaw(msg, "depth", `"7"`), false, false},
		{"no auth_events", func() []byte { b, _ := sjson.DeleteBytes(msg, "auth_events"); return rehashed(t, b) }(), false, true},
		{"room ID without '!'", set(msg, "room_id", "room:peer.test"), false, false},
		{"origin with '&' (kept before v11)", set(msg, "origin", "a&b.test"), false, true},
		{"prev event ID with '&'", set(msg, "prev_events", []string{"$a&b"}), false, false},
		{"content hash mismatch (redacted)", tampered, false, false},
		{"content hash mismatch, canonical (redacted)", tamperedCanonical, false, false},
		{"not canonical: whitespace", spaced, false, false},
		{"duplicate key", dupDepth, false, false},
		{"not an object", []byte(`[1]`), false, false},
	}
}

// TestParseCanonicalAgreesWithGomatrixserverlib: for every room version
// and every variant, an event parseCanonical takes is gomatrixserverlib's
// own parse of it byte for byte — the same JSON, the same event ID, not
// redacted, CheckFields passing — and its signing bytes are
// signingBytes' (gomatrixserverlib's redaction and canonical JSON); and
// what peers send (messages, other content-emptied events, with keys to
// strip or keys the redaction drops) does take it, while events whose
// redaction keeps content, that gomatrixserverlib would redact, refuse
// or read differently (case-insensitive keys, escapes) do not.
func TestParseCanonicalAgreesWithGomatrixserverlib(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	handled := 0
	for v, ver := range gomatrixserverlib.RoomVersions() {
		if v == gomatrixserverlib.RoomVersionPseudoIDs {
			continue
		}
		short := redactionKeys(ver) != nil
		if short {
			handled++
		}
		for _, c := range parseVariants(t, ver, key) {
			taken := checkParseCanonical(t, ver, c.raw)
			if short && !c.either && taken != c.taken {
				t.Errorf("v%s %s: parseCanonical took it: %v, want %v", v, c.name, taken, c.taken)
			}
			if !short && taken {
				t.Errorf("v%s %s: taken in a version it does not handle", v, c.name)
			}
		}
	}
	if handled < 8 {
		t.Errorf("the short path handles %d room versions; want every one with hashed event IDs (v3 on)", handled)
	}
}

// checkParseCanonical compares parseCanonical's answer for raw with
// gomatrixserverlib's, failing t if they differ; it reports whether the
// short path took raw.
func checkParseCanonical(t testing.TB, ver gomatrixserverlib.IRoomVersion, raw []byte) bool {
	t.Helper()
	got, signed, ok := parseCanonical(ver, raw)
	if !ok {
		return false
	}
	want, err := ver.NewEventFromUntrustedJSON(raw)
	if err != nil {
		t.Fatalf("v%s %s: taken, but gomatrixserverlib refuses it: %v", ver.Version(), raw, err)
	}
	if want.Redacted() || got.Redacted() {
		t.Fatalf("v%s %s: taken, but gomatrixserverlib redacts it", ver.Version(), raw)
	}
	if !bytes.Equal(got.JSON(), want.JSON()) {
		t.Fatalf("v%s: JSON\n%s\ngomatrixserverlib:\n%s", ver.Version(), got.JSON(), want.JSON())
	}
	if got.EventID() != want.EventID() {
		t.Fatalf("v%s %s: event ID %s, gomatrixserverlib %s", ver.Version(), raw, got.EventID(), want.EventID())
	}
	wantSigned, err := signingBytes(ver, want.JSON())
	if err != nil {
		t.Fatalf("v%s %s: taken, but its signing bytes fail: %v", ver.Version(), raw, err)
	}
	if !bytes.Equal(signed, wantSigned) {
		t.Fatalf("v%s: signing bytes\n%s\ngomatrixserverlib:\n%s", ver.Version(), signed, wantSigned)
	}
	if gomatrixserverlib.CheckFields(want) != nil {
		t.Fatalf("v%s %s: taken, but CheckFields refuses it", ver.Version(), raw)
	}
	return true
}

// FuzzParseCanonical: whatever bytes arrive, an event parseCanonical
// takes is gomatrixserverlib's parse of it exactly (checkParseCanonical),
// in room versions 10 (origin kept), 11 (origin dropped) and 12 (room IDs
// without a domain).
func FuzzParseCanonical(f *testing.F) {
	_, key, _ := ed25519.GenerateKey(nil)
	versions := []gomatrixserverlib.RoomVersion{gomatrixserverlib.RoomVersionV10, gomatrixserverlib.RoomVersionV11, gomatrixserverlib.RoomVersionV12}
	for i, v := range versions {
		for _, c := range parseVariants(f, gomatrixserverlib.MustGetRoomVersion(v), key) {
			f.Add(uint8(i), c.raw)
		}
	}
	f.Fuzz(func(t *testing.T, vi uint8, raw []byte) {
		checkParseCanonical(t, gomatrixserverlib.MustGetRoomVersion(versions[int(vi)%len(versions)]), raw)
	})
}

// canonicalSeeds are JSON values near the edges of room.CanonicalAlready
// and of gomatrixserverlib's canonical-JSON check.
var canonicalSeeds = []string{
	`{"a":1,"b":[true,false,null],"c":"e.E-0"}`, `{"n":999999999999999}`, `{"n":-999999999999999}`,
	`{"n":9007199254740992}`, `{"n":1.5}`, `{"n":1e3}`, `{"n":-0}`, `{"n":0}`, `{"n":-1}`, `[0,-0.0]`,
	`{"a":{"b":{"c":[1,2,{"d":"x"}]}}}`, `{"e":"true","t":true}`, `{"a":1,"a":2}`, `{"b":1,"a":2}`,
}

// TestCanonicalAlreadyPassesCheckCanonicalJSON: parseCanonical skips
// gomatrixserverlib's canonical-JSON check for JSON canonical already
// (room.CanonicalAlready), which that check must then pass in every room
// version: it only refuses numbers a canonical event cannot hold.
func TestCanonicalAlreadyPassesCheckCanonicalJSON(t *testing.T) {
	for _, s := range canonicalSeeds {
		checkCanonicalAlreadyPasses(t, []byte(s))
	}
}

func checkCanonicalAlreadyPasses(t *testing.T, b []byte) {
	t.Helper()
	if !room.CanonicalAlready(b) {
		return
	}
	for v, ver := range gomatrixserverlib.RoomVersions() {
		if err := ver.CheckCanonicalJSON(b); err != nil {
			t.Fatalf("v%s: %s is canonical already, but the version's check refuses it: %v", v, b, err)
		}
	}
}

// FuzzCanonicalAlreadyPassesCheckCanonicalJSON is
// TestCanonicalAlreadyPassesCheckCanonicalJSON over any bytes.
func FuzzCanonicalAlreadyPassesCheckCanonicalJSON(f *testing.F) {
	for _, s := range canonicalSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkCanonicalAlreadyPasses(t, b) })
}
