package main

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// presenceWindow is how long the presence section counts wake-ups.
const presenceWindow = 25 * time.Second

// benchPresence counts how often idle long polls wake up when one user has
// two sessions: alice's first session long-polls with set_presence=online,
// her second (an idle client) with set_presence=unavailable, and bob, who
// shares a room with her, long-polls too. Nobody sends anything, so every
// /sync that returns before its 30 s timeout is a wake-up caused by
// presence alone; the figure is the count over presenceWindow, scaled to a
// minute, for alice's first session and for bob.
func benchPresence(ctx context.Context, b *bench) []row {
	metric := fmt.Sprintf("idle long-poll wake-ups per minute, one user's 2 sessions (online + unavailable) long-polling, %s window: her session / a contact", presenceWindow)
	const target = "0"
	fail := func(err error) []row { return []row{errRow(metric, target, err)} }

	d, _, err := b.start(ctx)
	if err != nil {
		return fail(err)
	}
	defer b.stop(d)
	alice, err := b.register(ctx, d, "presence-alice")
	if err != nil {
		return fail(err)
	}
	alice2, err := b.login(ctx, d, "presence-alice")
	if err != nil {
		return fail(err)
	}
	bob, err := b.register(ctx, d, "presence-bob")
	if err != nil {
		return fail(err)
	}
	roomID, err := b.createRoom(ctx, alice)
	if err != nil {
		return fail(err)
	}
	if err := b.join(ctx, bob, roomID); err != nil {
		return fail(err)
	}

	const poll = 30 * time.Second
	wctx, cancel := context.WithTimeout(ctx, presenceWindow)
	defer cancel()
	var wg sync.WaitGroup
	var aliceWakes, bobWakes atomic.Int64
	var firstErr error
	var errOnce sync.Once
	loop := func(u *user, state string, wakes *atomic.Int64) {
		defer wg.Done()
		since := ""
		for wctx.Err() == nil {
			t0 := time.Now()
			r, err := b.presenceSync(wctx, u, since, state, poll)
			if wctx.Err() != nil {
				return
			}
			if err != nil {
				errOnce.Do(func() { firstErr = err })
				return
			}
			// The first sync (no since) and polls that ran their course
			// are not wake-ups.
			if since != "" && time.Since(t0) < poll && wakes != nil {
				wakes.Add(1)
			}
			since = r.NextBatch
		}
	}
	// Let each session's first sync settle its presence before counting.
	for _, u := range []*user{alice, alice2, bob} {
		if _, err := b.sync(ctx, u, "", "", 0); err != nil {
			return fail(err)
		}
	}
	wg.Add(3)
	go loop(alice, "online", &aliceWakes)
	go loop(alice2, "unavailable", nil)
	go loop(bob, "online", &bobWakes)
	wg.Wait()
	if firstErr != nil {
		return fail(firstErr)
	}
	perMin := func(n int64) float64 { return float64(n) * float64(time.Minute) / float64(presenceWindow) }
	return []row{{metric: metric, target: target,
		value: fmt.Sprintf("%.1f / %.1f (%d and %d wake-ups in %s)", perMin(aliceWakes.Load()), perMin(bobWakes.Load()),
			aliceWakes.Load(), bobWakes.Load(), presenceWindow),
		nums: figs(fig("hers", perMin(aliceWakes.Load()), "/min"), fig("contact", perMin(bobWakes.Load()), "/min"))}}
}

// presenceSync is a /sync long poll with set_presence.
func (b *bench) presenceSync(ctx context.Context, u *user, since, state string, timeout time.Duration) (*syncResp, error) {
	q := url.Values{"timeout": {strconv.FormatInt(timeout.Milliseconds(), 10)}, "set_presence": {state}}
	if since != "" {
		q.Set("since", since)
	}
	var out syncResp
	err := call(ctx, b.hc, u.d, "GET", "/_matrix/client/v3/sync?"+q.Encode(), u.token, nil, &out, timeout+15*time.Second)
	return &out, err
}

// login logs a registered user in again as a new device (another session).
func (b *bench) login(ctx context.Context, d *daemon, name string) (*user, error) {
	var out struct {
		UserID      string `json:"user_id"`
		AccessToken string `json:"access_token"`
	}
	body := map[string]any{"type": "m.login.password", "password": "bench-password-" + name,
		"identifier": map[string]string{"type": "m.id.user", "user": name}}
	if err := call(ctx, b.hc, d, "POST", "/_matrix/client/v3/login", "", body, &out, reqTimeout); err != nil {
		return nil, err
	}
	return &user{d: d, id: out.UserID, token: out.AccessToken}, nil
}
