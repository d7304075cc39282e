package main

import (
	"encoding/json"
	"fmt"
)

// httpError is an answer other than 200. Callers decide on its status or
// errcode with errors.As, never by reading the message.
type httpError struct {
	op      string // "POST /path", "POST sliding sync"
	status  int
	body    string // as much of the body as the message shows
	errcode string // the Matrix errcode of the body, if it has one
}

// newHTTPError keeps at most show bytes of body for the message.
func newHTTPError(op string, status int, body []byte, show int) *httpError {
	var m struct {
		Errcode string `json:"errcode"`
	}
	json.Unmarshal(body, &m)
	if len(body) > show {
		body = body[:show]
	}
	return &httpError{op: op, status: status, body: string(body), errcode: m.Errcode}
}

func (e *httpError) Error() string {
	return fmt.Sprintf("%s: HTTP %d: %s", e.op, e.status, e.body)
}
