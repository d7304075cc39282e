package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The memory row: what an open sliding sync connection costs the daemon.

// ssMemory opens -ss-conns connections, each with its first window of 20
// rooms, then parks a 30 s long poll on each, as a client always has one
// in flight. The connections belong to users made for this row, each in
// the owner's rooms (invited, then joined) and holding at most
// ssConnsPerUser of them: 10 conn_ids per device (the MSC scopes conn_id
// to a device) on up to 5 devices. The daemon keeps at most 16
// connections a device, 64 a user and 1,024 in all, dropping the least
// recently used; until December 2026 all 200 were the owner's, so all
// but 64 were dropped as they were made (the row's "PROBLEM: 137
// connections forgotten") and its per-connection figures were those of
// 64 connections divided by 200. At three points (before, after the
// first windows, with the polls parked), each once the daemon has gone
// idle (ssSettle), it reads the daemon's RssAnon
// (heap and stacks; the mapped bbolt file is not counted) and then its
// live heap: RssAnon also holds garbage not yet collected and
// heap the runtime has not returned, so its growth is an upper bound. For
// the live figure the section's daemon runs with GODEBUG=gctrace=1 and the
// bench makes it collect (ssChurn, on a device of the owner) and reads the
// GC's own report. Afterwards every connection must still be known to the
// server: its pos, re-sent with timeout 0, must not be refused with
// M_UNKNOWN_POS; and no parked poll may have answered early. Either fails
// the row, as its figures would then not be per open connection.
func ssMemory(ctx context.Context, b *bench, a *ssAccount) (string, []num, error) {
	n := b.cfg.ss.conns
	devices, err := b.ssMemDevices(ctx, a, n)
	if err != nil {
		return "", nil, err
	}
	churners, err := b.ssDevices(ctx, a, 1)
	if err != nil {
		return "", nil, err
	}
	churner := churners[0]
	type point struct {
		rss  int64 // RssAnon, KiB
		live int   // MB, from the GC trace
	}
	measure := func() (point, error) {
		var p point
		var err error
		if p.rss, err = memKB(a.d.pid, "RssAnon"); err != nil {
			return p, err
		}
		p.live, err = b.ssChurn(ctx, a.d, churner)
		return p, err
	}
	if err := ssSettle(ctx, a.d); err != nil {
		return "", nil, err
	}
	p0, err := measure()
	if err != nil {
		return "", nil, err
	}
	conn := func(i int) (*user, ssRequest) { return devices[i/10], ssWindow(fmt.Sprintf("mem-%d", i%10), true) } // 10 a device
	pos := make([]string, n)
	if err := parallel(n, 8, func(i int) error {
		u, req := conn(i)
		r, err := b.ssSync(ctx, u, "", 0, req)
		if err != nil {
			return err
		}
		pos[i] = r.Pos
		return nil
	}); err != nil {
		return "", nil, err
	}
	if err := ssSettle(ctx, a.d); err != nil {
		return "", nil, err
	}
	p1, err := measure()
	if err != nil {
		return "", nil, err
	}

	pctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var early atomic.Int64
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u, req := conn(i)
			if r, err := b.ssSync(pctx, u, pos[i], 30*time.Second, req); err == nil {
				early.Add(1) // nothing changed: a response now is a wake-up
				pos[i] = r.Pos
			}
		}()
	}
	err = ssSettle(ctx, a.d) // every poll has built its (empty) answer and waits
	var p2 point
	if err == nil {
		p2, err = measure()
	}
	cancel()
	wg.Wait()
	if err != nil {
		return "", nil, err
	}
	var unknown atomic.Int64
	if err := parallel(n, 8, func(i int) error {
		u, req := conn(i)
		_, err := b.ssSync(ctx, u, pos[i], 0, req)
		var he *httpError
		if errors.As(err, &he) && he.errcode == "M_UNKNOWN_POS" {
			unknown.Add(1)
			return nil
		}
		return err
	}); err != nil {
		return "", nil, err
	}
	rssPer := func(p point) float64 { return float64(p.rss-p0.rss) / float64(n) }
	livePer := func(p point) float64 { return float64((p.live-p0.live)<<10) / float64(n) }
	res := float64(1<<10) / float64(n) // the GC trace counts whole MB
	v := fmt.Sprintf("live heap %.0f ± %.0f KiB per connection after its first window, %.0f ± %.0f KiB with a long poll parked on each "+
		"(%d → %d → %d MB); RssAnon growth %.0f / %.0f KiB (%s → %s → %s)",
		livePer(p1), res, livePer(p2), res, p0.live, p1.live, p2.live,
		rssPer(p1), rssPer(p2), mb(p0.rss), mb(p1.rss), mb(p2.rss))
	if unknown.Load() > 0 || early.Load() > 0 {
		v += fmt.Sprintf("; PROBLEM: %d connections forgotten (M_UNKNOWN_POS), %d polls woke with nothing new", unknown.Load(), early.Load())
	}
	return v, figs(fig("live heap", livePer(p1), "KiB"), fig("parked", livePer(p2), "KiB")), nil
}

// ssSettle waits until the daemon has used no CPU for 1 s (two 0.5 s
// readings without a tick), i.e. every request sent so far is answered or
// parked, so that a memory reading holds no request still being built.
func ssSettle(ctx context.Context, d *daemon) error {
	deadline := time.Now().Add(30 * time.Second)
	quiet := 0
	c0, err := cpuTicks(d.pid)
	for err == nil && quiet < 2 && time.Now().Before(deadline) {
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return err
		}
		var c1 int64
		if c1, err = cpuTicks(d.pid); c1 == c0 {
			quiet++
		} else {
			quiet = 0
		}
		c0 = c1
	}
	if err == nil && quiet < 2 {
		err = fmt.Errorf("the daemon did not go idle in 30 s")
	}
	return err
}

// gcLine is one line of the Go runtime's GODEBUG=gctrace=1 report; the
// third heap figure is the live heap the collection marked.
var gcLine = regexp.MustCompile(`(?m)^gc \d+ @[0-9.]+s .*, \d+->\d+->(\d+) MB, \d+ MB goal`)

// ssChurn makes the daemon collect garbage twice (so one collection ran
// wholly after this call began) by sending it first-window requests on one
// connection, restarted each time, which leave nothing behind; it returns
// the live heap the last collection reported (goroutine stacks are not
// in it: the trace counts only their used bytes, in whole MB).
func (b *bench) ssChurn(ctx context.Context, d *daemon, u *user) (live int, err error) {
	lines := func() ([][]string, error) {
		data, err := os.ReadFile(d.logPath)
		if err != nil {
			return nil, err
		}
		return gcLine.FindAllStringSubmatch(string(data), -1), nil
	}
	before, err := lines()
	if err != nil {
		return 0, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for range 10 {
			if _, err := b.ssSync(ctx, u, "", 0, ssWindow("churn", false)); err != nil {
				return 0, err
			}
		}
		now, err := lines()
		if err != nil {
			return 0, err
		}
		if len(now) >= len(before)+2 {
			last := now[len(now)-1]
			live, _ = strconv.Atoi(last[1])
			return live, nil
		}
	}
	return 0, fmt.Errorf("the daemon did not collect garbage in 30 s of requests (is GODEBUG=gctrace=1 set?)")
}

// ssConnsPerUser is how many of the memory row's connections one user
// holds: within the daemon's 64 a user with room to spare.
const ssConnsPerUser = 50

// ssMemDevices makes the devices for n connections, 10 a device and
// ssConnsPerUser a user: it registers users ss-mem-0, … , each invited
// to and joined in every room of the owner (so their windows are the
// owner's, over the same 1,000 rooms), and logs each in again until it
// has its devices. Device i holds connections 10i … 10i+9.
func (b *bench) ssMemDevices(ctx context.Context, a *ssAccount, n int) ([]*user, error) {
	perUser := ssConnsPerUser / 10
	nDev := (n + 9) / 10
	nUsers := (nDev + perUser - 1) / perUser
	users, err := b.registerMany(ctx, a.d, "ss-mem", nUsers)
	if err != nil {
		return nil, err
	}
	if err := parallel(nUsers*len(a.rooms), 8, func(k int) error {
		u, room := users[k%nUsers], a.rooms[k/nUsers]
		if err := call(ctx, b.hc, a.d, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/invite", a.owner.token,
			map[string]string{"user_id": u.id}, nil, reqTimeout); err != nil {
			return fmt.Errorf("invite %s to %s: %w", u.id, room, err)
		}
		return b.join(ctx, u, room)
	}); err != nil {
		return nil, err
	}
	devices := make([]*user, nDev)
	err = parallel(nDev, 2, func(i int) (err error) {
		if i%perUser == 0 {
			devices[i] = users[i/perUser] // its registration's device
			return nil
		}
		devices[i], err = b.login(ctx, a.d, fmt.Sprintf("ss-mem-%d", i/perUser))
		return err
	})
	return devices, err
}

// ssDevices logs the owner in n times (a device each), two at a time
// (each login is a bcrypt check, and the server refuses a flood of them).
func (b *bench) ssDevices(ctx context.Context, a *ssAccount, n int) ([]*user, error) {
	devices := make([]*user, n)
	err := parallel(n, 2, func(i int) (err error) {
		devices[i], err = b.login(ctx, a.d, "ss-owner")
		return err
	})
	return devices, err
}
