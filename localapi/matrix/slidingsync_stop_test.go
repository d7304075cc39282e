package matrix_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"testing"
)

// TestSlidingSyncLongPollEndedAnswersJSON: a sliding sync long poll whose
// request context ends — the daemon cancels every request's context when it
// stops, to answer pending long polls at once — is answered with a Matrix
// error a client can read, never a 200 without a body (matrix-js-sdk took
// that for a network error: "Unexpected end of JSON input"), and the
// connection keeps its pos for the client's retry.
func TestSlidingSyncLongPollEndedAnswersJSON(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	body := map[string]any{"conn_id": "c", "lists": map[string]any{"a": ssList([][2]int{{0, 5}}, 1, nil)}}
	first := ts.ssOK(t, alice, "", -1, body)

	// Nothing changes for alice, so the request waits; its context has
	// already ended, as a stopping daemon's requests' have.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := ts.newRequest(t, "POST", ssPath+"?timeout=20000&pos="+url.QueryEscape(first.Pos), alice.Token, body)
	rec := httptest.NewRecorder()
	ts.API.ServeHTTP(rec, req.WithContext(ctx))
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil || m == nil {
		t.Fatalf("status %d with a body that is not a JSON object (%v): %q", rec.Code, err, rec.Body.String())
	}
	if rec.Code == 200 {
		t.Fatalf("a long poll that did not run its course answered 200: %s", rec.Body.String())
	}
	if code, _ := m["errcode"].(string); code == "" {
		t.Fatalf("status %d without an errcode: %s", rec.Code, rec.Body.String())
	}
	// The connection did not move: the client's retry with its pos works.
	ts.ssOK(t, alice, first.Pos, 0, body)
}
