package matrixerr

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestHandlerFuncWritesReturnedError: what a handler returns is written
// once, as Write writes it (status, errcode, Retry-After); a handler that
// answered and returned nil is left as it answered.
func TestHandlerFuncWritesReturnedError(t *testing.T) {
	cases := []struct {
		name   string
		h      HandlerFunc
		status int
		body   string
		retry  string
	}{
		{"matrix error", func(w http.ResponseWriter, r *http.Request) error { return Forbidden("no") },
			http.StatusForbidden, `{"errcode":"M_FORBIDDEN","error":"no"}` + "\n", ""},
		{"rate limited", func(w http.ResponseWriter, r *http.Request) error { return LimitExceeded(1500) },
			http.StatusTooManyRequests, `{"errcode":"M_LIMIT_EXCEEDED","error":"too many requests","retry_after_ms":1500}` + "\n", "2"},
		{"internal", func(w http.ResponseWriter, r *http.Request) error { return errors.New("secret detail") },
			http.StatusInternalServerError, `{"errcode":"M_UNKNOWN","error":"internal server error"}` + "\n", ""},
		{"answered", func(w http.ResponseWriter, r *http.Request) error {
			WriteJSON(w, http.StatusCreated, map[string]int{"a": 1})
			return nil
		}, http.StatusCreated, `{"a":1}` + "\n", ""},
	}
	for _, c := range cases {
		rec := httptest.NewRecorder()
		c.h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		if rec.Code != c.status || rec.Body.String() != c.body || rec.Header().Get("Retry-After") != c.retry {
			t.Errorf("%s: %d %q Retry-After %q, want %d %q %q", c.name, rec.Code, rec.Body, rec.Header().Get("Retry-After"), c.status, c.body, c.retry)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q", c.name, ct)
		}
	}
}
