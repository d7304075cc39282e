package matrixerr

import (
	"encoding/json"
	"log/slog"
	"net/http"
)

// HandlerFunc is an HTTP handler that returns its error instead of
// writing it: it writes its response and returns nil, or returns the
// error, which ServeHTTP writes once with Write. The Client-Server and
// Server-Server handlers all have this shape (their wrappers, authed and
// federation's handle, authenticate first), so a Matrix error is written
// in one place.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// ServeHTTP calls f and writes the error it returns.
func (f HandlerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := f(w, r); err != nil {
		Write(w, err)
	}
}

// WriteJSON answers with status and v as JSON: the one way Hearth's HTTP
// packages write a JSON body, so that every answer carries the same
// Content-Type. An error encoding v can only be the connection's (the
// values are Hearth's own), so it is logged at debug level, not answered.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		slog.Debug("write response", "err", err)
	}
}
