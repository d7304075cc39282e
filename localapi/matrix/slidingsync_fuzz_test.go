package matrix_test

import (
	"context"
	"encoding/json"
	"io"
	"net/url"
	"testing"
	"time"
)

// FuzzSlidingSyncRequest: whatever the body, pos and timeout, sliding sync
// answers 200 or a 4xx Matrix error — never a 500 or a crash. Run with
//
//	go test -run='^$' -fuzz=FuzzSlidingSyncRequest -fuzztime=30s ./localapi/matrix/
func FuzzSlidingSyncRequest(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"lists":{"a":{"ranges":[[0,10]],"timeline_limit":5,"required_state":[["*","*"]]}}}`,
		`{"lists":{"a":{"range":[0,1],"timeline_limit":1,"required_state":{"include":[{}],"lazy_members":true}}}}`,
		`{"lists":{"a":{"ranges":[[5,1]]}}}`, `{"lists":{"a":{"ranges":[[0,1e30]]}}}`, `{"lists":{"":{}}}`,
		`{"room_subscriptions":{"!x:y":{"timeline_limit":-1}}}`, `{"extensions":{"to_device":{"enabled":true,"since":"99999999"}}}`,
		`{"extensions":{"e2ee":{"enabled":true},"receipts":{"enabled":true,"rooms":["*"]},"typing":{"enabled":true,"lists":[]}}}`,
		`{"lists":{"a":{"filters":{"room_types":[null,"m.space"],"spaces":["!a:b"],"tags":["x"]}}}}`,
		`{"conn_id":"c","pos":"junk","timeout":-3}`, `[]`, `{"lists":[]}`, `{"lists":{"a":{"required_state":[["a"]]}}}`,
	} {
		f.Add(s, "", "0")
	}
	f.Add(`{}`, "x_1_1", "10")
	ts := newTestServer(f)
	alice := ts.register(f, "alice")
	room := ts.createRoom(f, alice, map[string]any{"name": "fuzz"})
	ts.send(f, alice, room, "1", "hello")
	f.Fuzz(func(t *testing.T, body, pos, timeout string) {
		path := ssPath + "?timeout=" + urlQuery(timeout)
		if pos != "" {
			path += "&pos=" + urlQuery(pos)
		}
		if len(timeout) > 2 {
			return // keep long polls out of the fuzzer: they only wait
		}
		req := ts.newRequest(t, "POST", path, alice.Token, []byte(body))
		ctx, cancel := context.WithTimeout(req.Context(), 5*time.Second)
		defer cancel()
		res, err := ts.http.Client().Do(req.WithContext(ctx))
		if err != nil {
			t.Fatalf("body %q pos %q timeout %q: %v", body, pos, timeout, err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		r := &response{Status: res.StatusCode, Body: b}
		if r.Status == 200 {
			var out map[string]any
			if json.Unmarshal(r.Body, &out) != nil || out["pos"] == nil {
				t.Fatalf("200 without a pos: %s", r.Body)
			}
			return
		}
		if r.Status >= 500 {
			t.Fatalf("body %q pos %q timeout %q: %d %s", body, pos, timeout, r.Status, r.Body)
		}
		var e struct {
			Errcode string `json:"errcode"`
		}
		if json.Unmarshal(r.Body, &e) != nil || e.Errcode == "" {
			t.Fatalf("error without errcode: %d %s", r.Status, r.Body)
		}
	})
}

func urlQuery(s string) string { return url.QueryEscape(s) }
