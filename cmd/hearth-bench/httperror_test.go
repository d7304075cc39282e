package main

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
)

// TestHTTPErrorDecides: a refusal is told apart by its status and errcode
// through errors.As, wrapped or not, and the message still shows the
// answer (cut to what the caller asked for).
func TestHTTPErrorDecides(t *testing.T) {
	body := []byte(`{"errcode":"M_UNKNOWN_POS","error":"unknown position"}`)
	err := fmt.Errorf("user 3: %w", newHTTPError("POST sliding sync", http.StatusBadRequest, body, 20))
	var he *httpError
	if !errors.As(err, &he) || he.status != http.StatusBadRequest || he.errcode != "M_UNKNOWN_POS" {
		t.Fatalf("errors.As: %v %+v", err, he)
	}
	if want := `user 3: POST sliding sync: HTTP 400: {"errcode":"M_UNKNOW`; err.Error() != want {
		t.Errorf("message %q, want %q", err.Error(), want)
	}
	if e := newHTTPError("POST /register", http.StatusTooManyRequests, []byte("busy"), 4); e.errcode != "" || e.status != 429 {
		t.Errorf("not JSON: %+v", e)
	}
}
