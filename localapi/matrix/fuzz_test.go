package matrix_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/localapi/matrix"
)

// Run a fuzzer with e.g.
//	go test -run='^$' -fuzz=FuzzRequestDecoders -fuzztime=30s ./localapi/matrix/
// Plain go test runs the seeds below as unit tests.

var (
	syncTokenGrammar = regexp.MustCompile(`^s[0-9]+(_[0-9]*)?$`)
	pageTokenGrammar = regexp.MustCompile(`^(t[0-9]+|s[0-9]+(_[0-9]*)?)$`)
)

// wantInvalidParam checks that a refused token is a 400 M_INVALID_PARAM,
// which the handlers write as is (anything else would be a 500).
func wantInvalidParam(t *testing.T, s string, err error) {
	t.Helper()
	var me *matrixerr.Error
	if !errors.As(err, &me) || me.Code != "M_INVALID_PARAM" || me.Status != http.StatusBadRequest {
		t.Fatalf("token %q: error %v is not a 400 M_INVALID_PARAM", s, err)
	}
}

func tokenSeeds(f *testing.F) {
	for _, s := range []string{"", "s", "s_", "s0_0", "s12_3", "s5", "s5_", "s007_01", "t0", "t42", "t", "garbage",
		"s18446744073709551615_18446744073709551615", "s18446744073709551616_0", "t18446744073709551616",
		"s-1_0", "s+1_0", "s1_2_3", "S1_0", "s1_-1", "s 1_0", "s1 _0", "s١_0", "t+5", "t0x10", "s0x1_0", "\x00", "s1_2\x00"} {
		f.Add(s, uint64(len(s)), uint64(7))
	}
	f.Add("s1_1", uint64(0), uint64(0))
	f.Add("t1", uint64(1<<63), ^uint64(0))
}

// FuzzParseSyncToken: no input panics; what parses is in the token
// grammar; what does not is a 400; a token the server made parses back to
// its values.
func FuzzParseSyncToken(f *testing.F) {
	tokenSeeds(f)
	f.Fuzz(func(t *testing.T, s string, pos, eph uint64) {
		p, e, err := matrix.ParseSyncToken(s)
		if err != nil {
			wantInvalidParam(t, s, err)
		} else {
			if !syncTokenGrammar.MatchString(s) {
				t.Fatalf("accepted %q, which is not a sync token", s)
			}
			// Parsing is stable: the canonical form of what s meant
			// means the same.
			if p2, e2, err := matrix.ParseSyncToken(matrix.SyncToken(p, e)); err != nil || p2 != p || e2 != e {
				t.Fatalf("%q → (%d,%d), whose token parses to (%d,%d,%v)", s, p, e, p2, e2, err)
			}
		}
		tok := matrix.SyncToken(pos, eph)
		p, e, err = matrix.ParseSyncToken(tok)
		if err != nil || p != pos || e != eph {
			t.Fatalf("server token %q for (%d,%d) parses to (%d,%d,%v)", tok, pos, eph, p, e, err)
		}
	})
}

// FuzzParsePageToken: as FuzzParseSyncToken, for /messages' from and to,
// which take pagination tokens and sync tokens.
func FuzzParsePageToken(f *testing.F) {
	tokenSeeds(f)
	f.Fuzz(func(t *testing.T, s string, pos, eph uint64) {
		p, err := matrix.ParsePageToken(s)
		if err != nil {
			wantInvalidParam(t, s, err)
		} else if !pageTokenGrammar.MatchString(s) {
			t.Fatalf("accepted %q (as %d), which is not a pagination or sync token", s, p)
		}
		if got, err := matrix.ParsePageToken(matrix.PageToken(pos)); err != nil || got != pos {
			t.Fatalf("page token for %d parses to (%d,%v)", pos, got, err)
		}
		if got, err := matrix.ParsePageToken(matrix.SyncToken(pos, eph)); err != nil || got != pos {
			t.Fatalf("sync token for (%d,%d) as a page token parses to (%d,%v)", pos, eph, got, err)
		}
	})
}

var errcodeGrammar = regexp.MustCompile(`^M_[A-Z_]+$`)

// decoderEndpoints are the endpoints FuzzRequestDecoders feeds. None of
// them can lock the fuzzing user out (no logout, password or device
// deletion), so every input runs against the same server.
var decoderEndpoints = []struct{ method, path string }{
	{"PUT", "/rooms/{room}/send/m.room.message/{txn}"},
	{"POST", "/createRoom"},
	{"POST", "/login"},
	{"POST", "/user/{user}/filter"},
	{"PUT", "/rooms/{room}/state/org.example.fuzz/{txn}"},
	{"PUT", "/rooms/{room}/typing/{user}"},
	{"PUT", "/rooms/{room}/redact/{event}/{txn}"},
	{"POST", "/rooms/{room}/read_markers"},
	{"PUT", "/user/{user}/account_data/org.example.fuzz"},
	{"POST", "/user_directory/search"},
	{"POST", "/publicRooms"},
}

// FuzzRequestDecoders sends arbitrary bodies to the real handler. Every
// answer must be a JSON object: 200, or a 4xx with a spec errcode. A 5xx
// or a panic fails.
func FuzzRequestDecoders(f *testing.F) {
	ts := newTestServer(f)
	alice := ts.register(f, "alice")
	roomID := ts.createRoom(f, alice, map[string]any{"name": "fuzz"})
	eventID := ts.send(f, alice, roomID, "seed", "hello")
	repl := strings.NewReplacer("{room}", url.PathEscape(roomID), "{user}", url.PathEscape(alice.ID),
		"{event}", url.PathEscape(eventID))
	var txn atomic.Int64

	seeds := []string{
		``, `{}`, ` `, `null`, `[]`, `"x"`, `1`, `{"a":`, `{'a':1}`, "{\"a\":\"\xff\"}", `{"a":1}{"b":2}`,
		`{"msgtype":"m.text","body":"hi"}`, `{"body":{"nested":[1,2,{"x":null}]}}`,
		`{"name":"r","topic":"t","preset":"public_chat","room_alias_name":"fuzz"}`,
		`{"room_version":"999"}`, `{"invite":["@bob:test.local"]}`, `{"initial_state":[{"type":"m.room.topic","content":{"topic":1}}]}`,
		`{"power_level_content_override":{"users":{"@alice:test.local":"100"}}}`, `{"creation_content":{"m.federate":"yes"}}`,
		`{"type":"m.login.password","identifier":{"type":"m.id.user","user":"alice"},"password":"x"}`,
		`{"type":"m.login.token","token":"nope"}`, `{"type":"m.login.password","identifier":{"type":"m.id.thirdparty"}}`,
		`{"room":{"timeline":{"limit":-5}}}`, `{"event_format":"bogus"}`, `{"room":{"rooms":"!x:y"}}`,
		`{"typing":true,"timeout":-1}`, `{"typing":true,"timeout":9223372036854775807}`, `{"typing":"yes"}`,
		`{"m.fully_read":"$nope","m.read":"$nope"}`, `{"limit":-1,"search_term":"a"}`,
		`{"limit":1e400}`, `{"limit":1.5}`, `{"since":"-1"}`, `{"since":"99999999999999999999"}`,
		`{"a":` + deepJSON(10001, "[", "]", "0") + `}`, strings.Repeat(`{"a":`, 64),
		"\xef\xbb\xbf{}", "{\"\\ud800\":1}", `{"a":"\u0000"}`, `{"a":1e999}`, `{"__proto__":{}}`,
	}
	for i, s := range seeds {
		f.Add(uint8(i%len(decoderEndpoints)), []byte(s))
		f.Add(uint8((i+1)%len(decoderEndpoints)), []byte(s))
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		ep := decoderEndpoints[int(which)%len(decoderEndpoints)]
		path := "/_matrix/client/v3" + strings.ReplaceAll(repl.Replace(ep.path), "{txn}", fmt.Sprint("f", txn.Add(1)))
		req := httptest.NewRequest(ep.method, path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if ep.path != "/login" {
			req.Header.Set("Authorization", "Bearer "+alice.Token)
		}
		rec := httptest.NewRecorder()
		ts.API.ServeHTTP(rec, req)
		status, out := rec.Code, rec.Body.Bytes()
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil || m == nil {
			t.Fatalf("%s %s: status %d, body not a JSON object (%v): %.300q", ep.method, ep.path, status, err, out)
		}
		switch {
		case status == 200:
		case status >= 400 && status < 500:
			code, _ := m["errcode"].(string)
			if !errcodeGrammar.MatchString(code) {
				t.Fatalf("%s %s: status %d with errcode %q: %.300s\nrequest: %.300q", ep.method, ep.path, status, code, out, body)
			}
			if _, ok := m["error"].(string); !ok {
				t.Fatalf("%s %s: status %d without an error message: %.300s", ep.method, ep.path, status, out)
			}
		default:
			t.Fatalf("%s %s: status %d: %.300s\nrequest: %.300q", ep.method, ep.path, status, out, body)
		}
	})
}
