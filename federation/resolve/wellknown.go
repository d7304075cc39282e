package resolve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"
)

// Well-known lookups (Server-Server API, "Resolving server names" step 3
// and GET /.well-known/matrix/server).
const (
	wellKnownMaxBytes     = 50 << 10 // a real answer is a few dozen bytes
	wellKnownMaxRedirects = 5        // "follow 30x redirects, carefully avoiding redirect loops"
	wellKnownTimeout      = 10 * time.Second
	wellKnownDefaultTTL   = 24 * time.Hour // the spec's recommended default
	wellKnownMaxTTL       = 48 * time.Hour // the spec's recommended cap
	wellKnownMinTTL       = 5 * time.Minute
	wellKnownFailTTL      = 10 * time.Minute // first failure; doubles per failure
	wellKnownMaxFailTTL   = time.Hour        // "errors ... cached for up to an hour"
)

// wellKnownEntry is one cached answer for a hostname.
type wellKnownEntry struct {
	server   spec.ServerName // the delegated name; "" when the lookup failed
	expires  time.Time
	failures int // consecutive failed lookups, for the back-off
}

// wellKnownCall is one fetch in flight, shared by everyone who asks for the
// same hostname meanwhile.
type wellKnownCall struct {
	done   chan struct{}
	server spec.ServerName
}

// wellKnownFor returns the m.server that host delegates to, or false when it
// has none (or the answer was unusable, or ctx ended first). Answers are
// cached; concurrent callers share one fetch, which runs detached from any
// one caller's context so a caller giving up never caches a failure.
func (r *Resolver) wellKnownFor(ctx context.Context, host string) (spec.ServerName, bool) {
	r.mu.Lock()
	e, cached := r.wellKnown[host]
	if cached && r.now().Before(e.expires) {
		r.mu.Unlock()
		return e.server, e.server != ""
	}
	call, running := r.wkInFlight[host]
	if !running {
		call = &wellKnownCall{done: make(chan struct{})}
		r.wkInFlight[host] = call
		go r.fetchAndStore(host, call, e.failures, r.generation)
	}
	r.mu.Unlock()
	select {
	case <-call.done:
		return call.server, call.server != ""
	case <-ctx.Done():
		return "", false
	}
}

func (r *Resolver) fetchAndStore(host string, call *wellKnownCall, failures int, generation uint64) {
	server, ttl, err := r.fetchWellKnown(host)
	now := r.now()
	entry := wellKnownEntry{server: server, expires: now.Add(ttl)}
	if err != nil {
		// Back off exponentially on repeated failures, as the spec suggests.
		entry.failures = failures + 1
		backoff := wellKnownFailTTL << min(entry.failures-1, 8)
		entry.expires = now.Add(min(backoff, wellKnownMaxFailTTL))
	}
	r.mu.Lock()
	if r.generation == generation {
		r.wellKnown[host] = entry
	}
	delete(r.wkInFlight, host)
	call.server = entry.server
	close(call.done)
	r.mu.Unlock()
}

// fetchWellKnown GETs https://<host>/.well-known/matrix/server (port 443)
// and returns the validated m.server and how long to cache it. Any error
// (network, non-200, oversized or bad JSON, invalid name) means "no
// delegation": the spec says to go on with SRV.
func (r *Resolver) fetchWellKnown(host string) (spec.ServerName, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), min(r.timeout, wellKnownTimeout))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+"/.well-known/matrix/server", nil)
	if err != nil {
		return "", 0, err
	}
	resp, err := r.wkClient.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("well-known of %s: status %d", host, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, wellKnownMaxBytes+1))
	if err != nil {
		return "", 0, fmt.Errorf("well-known of %s: %w", host, err)
	}
	if len(body) > wellKnownMaxBytes {
		return "", 0, fmt.Errorf("well-known of %s: body over %d bytes", host, wellKnownMaxBytes)
	}
	// The spec: assume JSON whatever the Content-Type.
	var doc struct {
		Server *string `json:"m.server"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", 0, fmt.Errorf("well-known of %s: %w", host, err)
	}
	if doc.Server == nil {
		return "", 0, fmt.Errorf("well-known of %s: no m.server", host)
	}
	server := spec.ServerName(*doc.Server)
	if _, _, err := parseServerName(server); err != nil {
		return "", 0, fmt.Errorf("well-known of %s: m.server: %w", host, err)
	}
	return server, cacheTTL(resp.Header, r.now()), nil
}

// newWellKnownClient builds the HTTP client for well-known fetches: same
// roots and dialer as federation, at most wellKnownMaxRedirects redirects
// and never to plain HTTP.
func (r *Resolver) newWellKnownClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext:           r.dialContext,
			TLSClientConfig:       r.TLSConfig(),
			TLSHandshakeTimeout:   wellKnownTimeout,
			ResponseHeaderTimeout: wellKnownTimeout,
			MaxIdleConnsPerHost:   1,
			IdleConnTimeout:       30 * time.Second,
			ForceAttemptHTTP2:     true,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > wellKnownMaxRedirects {
				return errors.New("too many redirects")
			}
			if req.URL.Scheme != "https" {
				return fmt.Errorf("redirect to %s URL refused", req.URL.Scheme)
			}
			return nil
		},
	}
}

// cacheTTL reads how long a well-known answer may be cached: Cache-Control
// max-age (no-store/no-cache count as 0), else Expires (relative to Date
// when given), else 24 h; clamped to [wellKnownMinTTL, 48 h] so a zero
// lifetime cannot turn every request into a fetch.
func cacheTTL(h http.Header, now time.Time) time.Duration {
	ttl := wellKnownDefaultTTL
	if d, ok := maxAge(h.Values("Cache-Control")); ok {
		ttl = d
	} else if exp := h.Get("Expires"); exp != "" {
		ttl = 0 // an unparseable Expires means "already expired" (RFC 9111 §5.3)
		if t, err := http.ParseTime(exp); err == nil {
			base := now
			if d, err := http.ParseTime(h.Get("Date")); err == nil {
				base = d
			}
			ttl = t.Sub(base)
		}
	}
	return min(max(ttl, wellKnownMinTTL), wellKnownMaxTTL)
}

// maxAge finds the lifetime a Cache-Control header grants, if it names one.
func maxAge(values []string) (time.Duration, bool) {
	var age time.Duration
	found := false
	for _, v := range values {
		for _, directive := range strings.Split(v, ",") {
			name, arg, _ := strings.Cut(strings.TrimSpace(directive), "=")
			switch strings.ToLower(name) {
			case "no-store", "no-cache":
				return 0, true
			case "max-age":
				secs, err := strconv.ParseInt(strings.Trim(arg, `"`), 10, 64)
				if err != nil || secs < 0 {
					return 0, true
				}
				age, found = time.Duration(min(secs, int64(wellKnownMaxTTL/time.Second)))*time.Second, true
			}
		}
	}
	return age, found
}
