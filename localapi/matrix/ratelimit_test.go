package matrix_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/localapi/matrix"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock(ts *testServer) *fakeClock {
	c := &fakeClock{now: time.Now()}
	ts.API.SetClock(c.Now)
	// Only the limits decide here, however slow the machine hashes.
	ts.API.SetHashSlotWait(time.Minute)
	return c
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// serveFrom sends a request straight to the real handler as if it came
// from the client address addr (host:port), which an httptest client on
// loopback cannot choose.
func (ts *testServer) serveFrom(t testing.TB, addr, method, path, token string, body any) *response {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		j, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	} else {
		rd = bytes.NewReader(nil)
	}
	req := httptest.NewRequest(method, path, rd)
	req.RemoteAddr = addr
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	ts.API.ServeHTTP(rec, req)
	return &response{Method: method, Path: path, Status: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
}

func passwordLogin(user, password string) map[string]any {
	return map[string]any{"type": "m.login.password", "password": password,
		"identifier": map[string]any{"type": "m.id.user", "user": user}}
}

// guessAll fires n requests at once and counts the answers by status;
// every 429 must carry retry_after_ms, every other status must be want.
func guessAll(t *testing.T, n int, want int, send func(i int) *response) (checked, limited int) {
	t.Helper()
	answers := make([]*response, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { answers[i] = send(i) })
	}
	wg.Wait()
	for _, r := range answers {
		switch r.Status {
		case http.StatusTooManyRequests:
			m := r.wantError(t, 429, "M_LIMIT_EXCEEDED")
			if ms, ok := m["retry_after_ms"].(float64); !ok || ms <= 0 {
				t.Errorf("429 without a positive retry_after_ms: %s", r.Body)
			}
			limited++
		case want:
			checked++
		default:
			t.Fatalf("status %d, want %d or 429: %s", r.Status, want, r.Body)
		}
	}
	return checked, limited
}

// Concurrent wrong guesses from one address: at most the address's burst
// reach the password check (the limit is reserved before the check, not
// counted after it), the rest are refused without one, and the owner
// from another address is not locked out.
func TestConcurrentWrongPasswordsBoundedByBurst(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	newFakeClock(ts) // no leak while the test runs

	const n = 100
	checked, limited := guessAll(t, n, http.StatusForbidden, func(int) *response {
		return ts.serveFrom(t, "192.0.2.66:4000", "POST", v3path+"/login", "", passwordLogin("alice", "wrong"))
	})
	if checked != matrix.AddrBurst || limited != n-matrix.AddrBurst {
		t.Fatalf("%d concurrent wrong passwords: %d checked (403), %d refused (429); want %d checked",
			n, checked, limited, matrix.AddrBurst)
	}
	ts.serveFrom(t, "192.0.2.66:4001", "POST", v3path+"/login", "", passwordLogin("alice", alice.Password)).
		wantError(t, 429, "M_LIMIT_EXCEEDED")
	ts.serveFrom(t, "198.51.100.7:5000", "POST", v3path+"/login", "", passwordLogin("alice", alice.Password)).
		wantStatus(t, 200)
}

// Guesses spread over many addresses: the account's burst bounds them,
// and the refusal lasts one leak interval after the guessing stops, not
// minutes per guess.
func TestDistributedGuessesLockOutBriefly(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	clock := newFakeClock(ts)

	const n = 100
	checked, _ := guessAll(t, n, http.StatusForbidden, func(i int) *response {
		return ts.serveFrom(t, fmt.Sprintf("203.0.113.%d:4000", i+1), "POST", v3path+"/login", "", passwordLogin("alice", "wrong"))
	})
	if checked != matrix.AccountBurst {
		t.Fatalf("%d wrong passwords from %d addresses: %d checked, want the account burst %d", n, n, checked, matrix.AccountBurst)
	}
	// The full user ID counts against the same account.
	r := ts.serveFrom(t, "198.51.100.7:5000", "POST", v3path+"/login", "", passwordLogin(alice.ID, alice.Password))
	m := r.wantError(t, 429, "M_LIMIT_EXCEEDED")
	if ms := m["retry_after_ms"].(float64); ms > float64(matrix.GuessLeak.Milliseconds()) {
		t.Errorf("after %d guesses retry_after_ms = %v, want at most one leak interval (%v)", n, ms, matrix.GuessLeak)
	}
	if r.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After header")
	}
	clock.Add(matrix.GuessLeak)
	ts.serveFrom(t, "198.51.100.7:5000", "POST", v3path+"/login", "", passwordLogin("alice", alice.Password)).
		wantStatus(t, 200)
}

// Guessing through UIA (here POST /account/password, behind
// m.login.password) meets the same limits as /login.
func TestUIAPasswordGuessesLimited(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	newFakeClock(ts)

	const n = 40
	checked, limited := guessAll(t, n, http.StatusUnauthorized, func(int) *response {
		return ts.serveFrom(t, "192.0.2.66:4000", "POST", v3path+"/account/password", alice.Token, map[string]any{
			"new_password": "new", "auth": map[string]any{"type": "m.login.password", "password": "wrong",
				"identifier": map[string]any{"type": "m.id.user", "user": "alice"}}})
	})
	if checked != matrix.AddrBurst || limited != n-matrix.AddrBurst {
		t.Fatalf("%d concurrent wrong UIA passwords: %d checked, %d refused; want %d checked", n, checked, limited, matrix.AddrBurst)
	}
	// A login of the same account from another address still works.
	ts.serveFrom(t, "198.51.100.7:5000", "POST", v3path+"/login", "", passwordLogin("alice", alice.Password)).
		wantStatus(t, 200)
}

// With every hashing slot busy a password check waits briefly, then is
// refused with 429, and the refused attempt is not counted against the
// client.
func TestPasswordHashingSlotsCapped(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	newFakeClock(ts)

	release := ts.API.HoldHashSlots(10 * time.Millisecond)
	for range matrix.AddrBurst + 1 {
		m := ts.serveFrom(t, "192.0.2.66:4000", "POST", v3path+"/login", "", passwordLogin("alice", alice.Password)).
			wantError(t, 429, "M_LIMIT_EXCEEDED")
		if ms, ok := m["retry_after_ms"].(float64); !ok || ms <= 0 {
			t.Errorf("retry_after_ms = %v, want a positive number", m["retry_after_ms"])
		}
	}
	// Hashing a new password takes a slot too: a registration waits, is
	// refused, and creates nobody.
	register := func() *response {
		return ts.serveFrom(t, "192.0.2.66:4000", "POST", v3path+"/register", "", map[string]any{
			"username": "bob", "password": "pw", "auth": map[string]any{"type": "m.login.dummy"}})
	}
	register().wantError(t, 429, "M_LIMIT_EXCEEDED")
	ts.serveFrom(t, "192.0.2.66:4000", "GET", v3path+"/register/available?username=bob", "", nil).wantStatus(t, 200)
	release()
	ts.serveFrom(t, "192.0.2.66:4000", "POST", v3path+"/login", "", passwordLogin("alice", alice.Password)).
		wantStatus(t, 200)
	register().wantStatus(t, 200)
}

// A flood of distinct addresses leaves at most MaxLimiterKeys remembered,
// and a window later nothing.
func TestGuessLimiterStateBounded(t *testing.T) {
	ts := newTestServer(t, matrix.Config{Registration: matrix.RegistrationToken, RegistrationTokens: []string{"let-me-in"}})
	clock := newFakeClock(ts)
	validity := "/_matrix/client/v1/register/m.login.registration_token/validity?token=guess"
	n := matrix.MaxLimiterKeys + 500
	for i := range n {
		r := ts.serveFrom(t, fmt.Sprintf("10.%d.%d.%d:4000", i>>16&255, i>>8&255, i&255), "GET", validity, "", nil)
		r.wantStatus(t, 200)
	}
	if addrs, _ := ts.API.LimiterKeys(); addrs > matrix.MaxLimiterKeys {
		t.Fatalf("%d addresses guessed: %d remembered, want at most %d", n, addrs, matrix.MaxLimiterKeys)
	}
	// Registration tokens are guessed under the address limit too.
	for range matrix.AddrBurst {
		ts.serveFrom(t, "192.0.2.66:4000", "GET", validity, "", nil).wantStatus(t, 200)
	}
	ts.serveFrom(t, "192.0.2.66:4000", "GET", validity, "", nil).wantError(t, 429, "M_LIMIT_EXCEEDED")
	clock.Add(time.Duration(matrix.AddrBurst) * matrix.GuessLeak)
	ts.serveFrom(t, "192.0.2.67:4000", "GET", validity, "", nil).wantStatus(t, 200)
	if addrs, _ := ts.API.LimiterKeys(); addrs != 1 {
		t.Fatalf("every bucket drained: %d addresses remembered, want 1 (the last)", addrs)
	}
}

// UIA sessions are capped (the least recently used goes) and expire when
// idle.
func TestUIASessionsBounded(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	clock := newFakeClock(ts)
	start := func() string {
		r := ts.serveFrom(t, "192.0.2.1:4000", "POST", v3path+"/delete_devices", alice.Token, map[string]any{"devices": []string{}})
		r.wantStatus(t, 401)
		return r.str(t, "session")
	}
	first := start()
	last := ""
	for range matrix.MaxUIASessions {
		last = start()
	}
	if n := ts.API.UIASessions(); n > matrix.MaxUIASessions {
		t.Fatalf("%d sessions held, want at most %d", n, matrix.MaxUIASessions)
	}
	// A session that is not known (any more) is answered with a new one.
	auth := func(session string) *response {
		return ts.serveFrom(t, "192.0.2.1:4000", "POST", v3path+"/delete_devices", alice.Token, map[string]any{
			"devices": []string{}, "auth": map[string]any{"session": session}})
	}
	if got := auth(last).str(t, "session"); got != last {
		t.Errorf("the newest session was dropped (answered with %q)", got)
	}
	if got := auth(first).str(t, "session"); got == first {
		t.Error("the oldest session survived the cap")
	}
	clock.Add(matrix.UIAIdle + time.Second)
	start()
	if n := ts.API.UIASessions(); n != 1 {
		t.Fatalf("after %v idle: %d sessions held, want 1", matrix.UIAIdle, n)
	}
}

// A guess whose client gives up while it waits for a hashing slot is
// refused like any guess over the cap, not answered (and logged, at error
// level, which the log's repeat limiter lets through) as an internal
// error: a flood of guessers that hang up must not fill the log.
func TestGuessAbandonedWaitingForSlotNotInternalError(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	var logged bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelError})))
	t.Cleanup(func() { slog.SetDefault(old) })

	release := ts.API.HoldHashSlots(time.Minute)
	defer release()
	body, _ := json.Marshal(passwordLogin("alice", alice.Password))
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the client has hung up
	req := httptest.NewRequest("POST", v3path+"/login", bytes.NewReader(body)).WithContext(ctx)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	ts.API.ServeHTTP(rec, req)
	if rec.Code != 429 || logged.Len() != 0 {
		t.Fatalf("abandoned guess: HTTP %d %s; logged %q", rec.Code, rec.Body, logged.String())
	}
}
