package appservice

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// Bounds of every request to an appservice. Its URL is the owner's
// choice, usually loopback or the LAN, so unlike federation no address
// policy applies; a slow or chatty appservice is bounded instead.
const (
	requestTimeout   = 30 * time.Second
	maxResponseBytes = 1 << 20
)

var httpClient = &http.Client{
	Timeout: requestTimeout,
	// Redirects would carry the hs_token elsewhere.
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// call sends one request to the appservice with its hs_token in the
// Authorization header only (Application Service API §"Authorization"),
// and decodes a 2xx JSON answer into out (unless nil). A non-2xx answer
// is a *StatusError.
func (s *Service) call(ctx context.Context, method, path string, body, out any) error {
	if s.Reg.URL == "" {
		return errNoURL
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(s.Reg.URL, "/")+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.Reg.HSToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if len(data) > maxResponseBytes {
		return fmt.Errorf("answer over %d bytes", maxResponseBytes)
	}
	if resp.StatusCode/100 != 2 {
		return &StatusError{Status: resp.StatusCode, Body: string(data)}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("answer is not the expected JSON: %w", err)
		}
	}
	return nil
}

var errNoURL = errors.New("the appservice has no url")

// StatusError is an appservice's non-2xx answer.
type StatusError struct {
	Status int
	Body   string
}

func (e *StatusError) Error() string { return fmt.Sprintf("appservice answered %d", e.Status) }

// Ping is the homeserver's side of POST
// /_matrix/client/v1/appservice/{appserviceId}/ping: it calls POST
// {url}/_matrix/app/v1/ping and answers in the spec's errors.
func (r *Registry) Ping(ctx context.Context, id, txnID string) error {
	s := r.Get(id)
	if s == nil {
		return matrixerr.NotFound("no such application service")
	}
	body := map[string]any{}
	if txnID != "" {
		body["transaction_id"] = txnID
	}
	err := s.call(ctx, http.MethodPost, "/_matrix/app/v1/ping", body, nil)
	if err == nil {
		r.health.succeeded(id)
		if r.onPing != nil {
			r.onPing(id) // it is up: what waits for it goes now
		}
		return nil
	}
	r.health.failed(id, err)
	var se *StatusError
	switch {
	case errors.Is(err, errNoURL):
		return &matrixerr.Error{Status: http.StatusBadRequest, Code: "M_URL_NOT_SET", Message: "the application service has no url"}
	case errors.As(err, &se):
		return &matrixerr.Error{Status: http.StatusBadGateway, Code: "M_BAD_STATUS", Message: "the application service answered an error",
			Extra: map[string]any{"status": se.Status, "body": se.Body}}
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return &matrixerr.Error{Status: http.StatusGatewayTimeout, Code: "M_CONNECTION_TIMEOUT", Message: "the application service did not answer in time"}
	}
	return &matrixerr.Error{Status: http.StatusBadGateway, Code: "M_CONNECTION_FAILED", Message: "could not reach the application service"}
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
