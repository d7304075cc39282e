package federation

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/federation/ratelimit"
)

// TestAuthHeaderCheckedBeforeBody: a request without a usable X-Matrix
// header is answered 401 from its headers alone, while the client has
// sent no byte of the body it announced (a huge one, or a small one that
// never comes), and the connection is closed rather than drained.
func TestAuthHeaderCheckedBeforeBody(t *testing.T) {
	n := newUKNet()
	newUKServer(t, n, "hs1.test", false)
	addr := n.servers["hs1.test"].Listener.Addr().String()
	for name, c := range map[string]struct{ auth, length, errcode string }{
		"no header, huge body":      {"", "1000000000", "M_UNAUTHORIZED"},
		"no header, missing body":   {"", "100", "M_UNAUTHORIZED"},
		"no sig":                    {`X-Matrix origin="hs2.test",key="ed25519:a"`, "100", "M_UNAUTHORIZED"},
		"another destination":       {`X-Matrix origin="hs2.test",destination="hs9.test",key="ed25519:a",sig="x"`, "100", "M_UNAUTHORIZED"},
		"malformed origin":          {`X-Matrix origin="hs2.test:http",key="ed25519:a",sig="x"`, "100", "M_INVALID_PARAM"},
		"basic auth is no X-Matrix": {"Basic Zm9vOmJhcg==", "1000000000", "M_UNAUTHORIZED"},
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// Only a bound that turns a hang into a failure: today's
			// server answers without waiting.
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			head := "PUT /_matrix/federation/v1/send/t1 HTTP/1.1\r\nHost: hs1.test\r\nContent-Type: application/json\r\nContent-Length: " + c.length + "\r\n"
			if c.auth != "" {
				head += "Authorization: " + c.auth + "\r\n"
			}
			if _, err := io.WriteString(conn, head+"\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer before the body: %v", err)
			}
			var body struct{ Errcode string }
			json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if body.Errcode != c.errcode || (c.errcode == "M_UNAUTHORIZED" && resp.StatusCode != 401) {
				t.Errorf("%d %s, want %s", resp.StatusCode, body.Errcode, c.errcode)
			}
			if !resp.Close {
				t.Error("the connection is kept open, so the unread body would be drained")
			}
		})
	}
}

// TestOriginRateLimit: past its burst, an origin gets 429
// M_LIMIT_EXCEEDED with retry_after_ms; another origin is unaffected, and
// requests forged in a server's name (bad signature) spend nothing of its
// budget.
func TestOriginRateLimit(t *testing.T) {
	n := newUKNet()
	hs1 := newUKServer(t, n, "hs1.test", false)
	hs2, hs3 := newUKServer(t, n, "hs2.test", false), newUKServer(t, n, "hs3.test", false)
	hs1.svc.limits = newOriginLimiter(0.001, 3) // 3 at once, then one per 1000 s
	hs1.addUser(t, "alice", "ADEV", false)
	const path = "/_matrix/federation/v1/query/profile?user_id=@alice:hs1.test"

	// A forger signing as hs2 with a key that is not hs2's, many times.
	_, wrong := newEd25519(t)
	for range 10 {
		fr := fclient.NewFederationRequest("GET", "hs2.test", "hs1.test", path)
		if err := fr.Sign("hs2.test", "ed25519:t", wrong); err != nil {
			t.Fatal(err)
		}
		req, _ := fr.HTTPRequest()
		resp, err := n.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("forged request: %d, want 401", resp.StatusCode)
		}
	}
	for i := range 3 {
		if status, errcode, _ := hs2.call(t, "GET", "hs1.test", path, nil); status != http.StatusOK {
			t.Fatalf("request %d of the burst: %d %s", i+1, status, errcode)
		}
	}
	if status, errcode, _ := hs2.call(t, "GET", "hs1.test", path, nil); status != http.StatusTooManyRequests || errcode != "M_LIMIT_EXCEEDED" {
		t.Fatalf("past the burst: %d %s", status, errcode)
	}
	// retry_after_ms is set.
	fr := fclient.NewFederationRequest("GET", "hs2.test", "hs1.test", path)
	if err := fr.Sign("hs2.test", hs2.svc.cfg.KeyID, hs2.svc.cfg.Key); err != nil {
		t.Fatal(err)
	}
	req, _ := fr.HTTPRequest()
	resp, err := n.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	var lim struct {
		Errcode      string `json:"errcode"`
		RetryAfterMs int64  `json:"retry_after_ms"`
	}
	json.NewDecoder(resp.Body).Decode(&lim)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || lim.RetryAfterMs <= 0 {
		t.Errorf("limited answer: %d %+v, want 429 with retry_after_ms", resp.StatusCode, lim)
	}
	if status, errcode, _ := hs3.call(t, "GET", "hs1.test", path, nil); status != http.StatusOK {
		t.Errorf("another origin: %d %s, want 200", status, errcode)
	}
}

func serverNameN(i int) spec.ServerName { return spec.ServerName(fmt.Sprintf("s%d.test", i)) }

// TestOriginLimiterBounded: the limiter's map stays bounded however many
// origins it sees.
func TestOriginLimiterBounded(t *testing.T) {
	l := newOriginLimiter(1, 1)
	now := time.Now()
	for i := range 3 * maxLimitedOrigins {
		l.take(serverNameN(i), now)
	}
	if n := l.buckets.Len(); n > maxLimitedOrigins {
		t.Fatalf("%d buckets, want at most %d", n, maxLimitedOrigins)
	}
}

// TestForgedOriginsLimitedPerAddress: every request signed in the name of
// a server whose key we do not hold makes us fetch that server's keys, so
// a client address whose requests keep failing their signature check is
// refused with 429 M_LIMIT_EXCEEDED before the body (and before any fetch)
// once past its allowance, whatever origins it names.
func TestForgedOriginsLimitedPerAddress(t *testing.T) {
	n := newUKNet()
	hs1 := newUKServer(t, n, "hs1.test", false)
	hs1.svc.authFailures = ratelimit.New[netip.Prefix](0.001, 3, maxLimitedClients)
	const path = "/_matrix/federation/v1/query/profile?user_id=@alice:hs1.test"
	_, wrong := newEd25519(t)
	forge := func(i int) (int, string) {
		origin := spec.ServerName(fmt.Sprintf("forged%d.test", i))
		fr := fclient.NewFederationRequest("GET", origin, "hs1.test", path)
		if err := fr.Sign(origin, "ed25519:t", wrong); err != nil {
			t.Fatal(err)
		}
		req, _ := fr.HTTPRequest()
		resp, err := n.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct{ Errcode string }
		json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.Errcode
	}
	for i := range 3 {
		if status, errcode := forge(i); status != http.StatusUnauthorized {
			t.Fatalf("forged request %d: %d %s, want 401", i, status, errcode)
		}
	}
	if status, errcode := forge(3); status != http.StatusTooManyRequests || errcode != "M_LIMIT_EXCEEDED" {
		t.Fatalf("past the allowance: %d %s, want 429 M_LIMIT_EXCEEDED", status, errcode)
	}
}
