package resolve

import (
	"context"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// delegating serves origin.test's well-known with whatever *to holds now,
// plus headers, so a test can change the answer and see when it is refetched.
func delegating(mu *sync.Mutex, to *string, headers ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		body := `{"m.server":"` + *to + `"}`
		mu.Unlock()
		serveJSON(body, headers...)(w, r)
	}
}

func TestWellKnownCacheLifetime(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers []string
		fresh   time.Duration // still cached this long after the fetch
		stale   time.Duration // refetched by then
	}{
		{"max-age", []string{"Cache-Control", "public, max-age=600"}, 9 * time.Minute, 11 * time.Minute},
		{"default 24h", nil, 23 * time.Hour, 25 * time.Hour},
		{"capped at 48h", []string{"Cache-Control", "max-age=999999"}, 47 * time.Hour, 49 * time.Hour},
		{"Expires", []string{"Expires", time.Now().Add(2 * time.Hour).UTC().Format(http.TimeFormat)}, 110 * time.Minute, 130 * time.Minute},
		{"no-store floored", []string{"Cache-Control", "no-store"}, 4 * time.Minute, 6 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			var mu sync.Mutex
			to := "deleg.test:1"
			e.wk.handle("origin.test", delegating(&mu, &to, tc.headers...))

			if got := e.resolve(t, "origin.test"); got.Addr != "deleg.test:1" {
				t.Fatalf("first: got %+v", got)
			}
			mu.Lock()
			to = "deleg.test:2"
			mu.Unlock()
			e.clock.advance(tc.fresh)
			if got := e.resolve(t, "origin.test"); got.Addr != "deleg.test:1" || e.wk.count("origin.test") != 1 {
				t.Fatalf("after %v: got %+v with %d fetches, want the cached answer", tc.fresh, got, e.wk.count("origin.test"))
			}
			e.clock.advance(tc.stale - tc.fresh)
			if got := e.resolve(t, "origin.test"); got.Addr != "deleg.test:2" || e.wk.count("origin.test") != 2 {
				t.Fatalf("after %v: got %+v with %d fetches, want a refetch", tc.stale, got, e.wk.count("origin.test"))
			}
		})
	}
}

func TestWellKnownFailureBackoff(t *testing.T) {
	e := newEnv(t, nil) // origin.test's well-known answers 404
	e.resolve(t, "origin.test")
	e.resolve(t, "origin.test")
	if n := e.wk.count("origin.test"); n != 1 {
		t.Fatalf("failure not cached: %d fetches", n)
	}
	// First failure: 10 minutes; second: 20; then 40; never over an hour.
	for i, step := range []struct {
		wait  time.Duration
		fetch int
	}{
		{9 * time.Minute, 1}, {2 * time.Minute, 2},
		{19 * time.Minute, 2}, {2 * time.Minute, 3},
		{39 * time.Minute, 3}, {2 * time.Minute, 4},
		{59 * time.Minute, 4}, {2 * time.Minute, 5},
		{59 * time.Minute, 5}, {2 * time.Minute, 6},
	} {
		e.clock.advance(step.wait)
		e.resolve(t, "origin.test")
		if n := e.wk.count("origin.test"); n != step.fetch {
			t.Fatalf("step %d: %d fetches, want %d", i, n, step.fetch)
		}
	}
	// A success resets the back-off.
	e.wk.handle("origin.test", serveJSON(`{"m.server":"deleg.test:1"}`))
	e.clock.advance(time.Hour)
	if got := e.resolve(t, "origin.test"); got.Addr != "deleg.test:1" {
		t.Fatalf("after recovery: got %+v", got)
	}
}

func TestSRVCached(t *testing.T) {
	e := newEnv(t, nil)
	e.srv.set("_matrix-fed._tcp.origin.test", &net.SRV{Target: "fed.host.test.", Port: 7000})
	e.resolve(t, "origin.test")
	e.resolve(t, "origin.test")
	if n := e.srv.count("_matrix-fed._tcp.origin.test"); n != 1 {
		t.Fatalf("SRV looked up %d times, want 1", n)
	}
	e.clock.advance(srvTTL + time.Second)
	e.resolve(t, "origin.test")
	if n := e.srv.count("_matrix-fed._tcp.origin.test"); n != 2 {
		t.Fatalf("SRV looked up %d times after expiry, want 2", n)
	}
	// "No such record" is cached too.
	if n := e.srv.count("_matrix._tcp.origin.test"); n != 0 {
		t.Fatalf("_matrix looked up %d times though _matrix-fed answered", n)
	}
	e.resolve(t, "deleg.test")
	e.resolve(t, "deleg.test")
	if n := e.srv.count("_matrix._tcp.deleg.test"); n != 1 {
		t.Fatalf("missing SRV looked up %d times, want 1", n)
	}
}

func TestForget(t *testing.T) {
	e := newEnv(t, nil)
	var mu sync.Mutex
	to := "deleg.test"
	e.wk.handle("origin.test", delegating(&mu, &to))
	e.srv.set("_matrix-fed._tcp.deleg.test", &net.SRV{Target: "a.host.test", Port: 1})
	if got := e.resolve(t, "origin.test"); got.Addr != "a.host.test:1" {
		t.Fatalf("got %+v", got)
	}
	mu.Lock()
	to = "deleg.test:2"
	mu.Unlock()
	e.srv.set("_matrix-fed._tcp.origin.test", &net.SRV{Target: "b.host.test", Port: 2})
	e.resolve(t, "origin.test")
	if e.wk.count("origin.test") != 1 {
		t.Fatal("well-known not cached before Forget")
	}
	e.r.Forget()
	if got := e.resolve(t, "origin.test"); got.Addr != "deleg.test:2" || e.wk.count("origin.test") != 2 {
		t.Fatalf("after Forget: got %+v with %d fetches", got, e.wk.count("origin.test"))
	}
	e.resolve(t, "deleg.test")
	e.r.Forget()
	e.resolve(t, "deleg.test")
	if n := e.srv.count("_matrix-fed._tcp.deleg.test"); n != 3 {
		t.Fatalf("SRV looked up %d times, want 3 (once before and once after each Forget)", n)
	}
}

func TestForgetDuringFetch(t *testing.T) {
	e := newEnv(t, nil)
	started, release := make(chan struct{}), make(chan struct{})
	e.wk.handle("origin.test", func(w http.ResponseWriter, r *http.Request) {
		if e.wk.count("origin.test") == 1 {
			close(started)
			<-release
		}
		serveJSON(`{"m.server":"deleg.test:1"}`)(w, r)
	})
	done := make(chan Target)
	go func() {
		got, _ := e.r.Resolve(context.Background(), "origin.test")
		done <- got
	}()
	<-started
	e.r.Forget() // the answer in flight predates it: use it, but do not keep it
	close(release)
	if got := <-done; got.Addr != "deleg.test:1" {
		t.Fatalf("got %+v", got)
	}
	e.resolve(t, "origin.test")
	if n := e.wk.count("origin.test"); n != 2 {
		t.Fatalf("%d fetches, want 2: an answer fetched before Forget was cached", n)
	}
}

func TestWellKnownOneFetchForConcurrentCallers(t *testing.T) {
	e := newEnv(t, nil)
	release := make(chan struct{})
	e.wk.handle("origin.test", func(w http.ResponseWriter, r *http.Request) {
		<-release
		serveJSON(`{"m.server":"deleg.test:1"}`)(w, r)
	})
	var wg sync.WaitGroup
	results := make(chan Target, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := e.r.Resolve(context.Background(), "origin.test")
			if err != nil {
				t.Error(err)
			}
			results <- got
		}()
	}
	// A caller that gives up returns at once and caches nothing.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.r.Resolve(ctx, "origin.test"); err == nil {
		t.Error("Resolve with a cancelled context succeeded before the fetch finished")
	}
	close(release)
	wg.Wait()
	close(results)
	for got := range results {
		if got.Addr != "deleg.test:1" {
			t.Errorf("got %+v", got)
		}
	}
	if n := e.wk.count("origin.test"); n != 1 {
		t.Errorf("%d fetches for concurrent callers, want 1", n)
	}
}

func TestCacheTTLHeaders(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	date := now.Add(-time.Hour).Format(http.TimeFormat) // the server's clock is an hour behind
	for _, tc := range []struct {
		h    http.Header
		want time.Duration
	}{
		{http.Header{}, 24 * time.Hour},
		{http.Header{"Cache-Control": {"max-age=3600"}}, time.Hour},
		{http.Header{"Cache-Control": {"public", `max-age="7200"`}}, 2 * time.Hour},
		{http.Header{"Cache-Control": {"max-age=3600, no-cache"}}, wellKnownMinTTL},
		{http.Header{"Cache-Control": {"max-age=-5"}}, wellKnownMinTTL},
		{http.Header{"Cache-Control": {"max-age=99999999999999999"}}, 48 * time.Hour},
		{http.Header{"Cache-Control": {"max-age=3600"}, "Expires": {now.Add(5 * time.Hour).Format(http.TimeFormat)}}, time.Hour},
		{http.Header{"Expires": {now.Add(3 * time.Hour).Format(http.TimeFormat)}, "Date": {date}}, 4 * time.Hour},
		{http.Header{"Expires": {"0"}}, wellKnownMinTTL},
		{http.Header{"Expires": {now.Add(100 * time.Hour).Format(http.TimeFormat)}}, 48 * time.Hour},
	} {
		if got := cacheTTL(tc.h, now); got != tc.want {
			t.Errorf("%v: got %v, want %v", tc.h, got, tc.want)
		}
	}
}
