package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"net/url"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Simplified Sliding Sync (MSC4186, issue 14): what Element X sees of a
// server. The request shapes are the ones matrix-rust-sdk sends to the
// unstable endpoint: `pos` and `timeout` as query parameters, `conn_id`
// in the body, lists with `ranges` and `required_state` as
// [type, state_key] pairs with "$LAZY" and "$ME".

const ssPath = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"

// ssConfig holds the slidingsync section's knobs.
type ssConfig struct {
	rooms       int           // rooms the account is in
	fresh       int           // fresh connections timed for the first window
	msgs        int           // messages timed from send to long-poll response
	interval    time.Duration // pause between those messages
	conns       int           // open connections for the memory row
	idleClients int           // long-polling clients in the idle row
	idlePoll    time.Duration // their long-poll timeout
}

func (c *ssConfig) register(fs *flag.FlagSet) {
	fs.IntVar(&c.rooms, "ss-rooms", 1000, "slidingsync: rooms the account is in")
	fs.IntVar(&c.fresh, "ss-fresh", 20, "slidingsync: fresh connections (new conn_id each) timed for the first window")
	fs.IntVar(&c.msgs, "ss-msgs", 200, "slidingsync: messages timed from send to the long poll's response")
	fs.DurationVar(&c.interval, "ss-interval", 10*time.Millisecond, "slidingsync: pause between those messages")
	fs.IntVar(&c.conns, "ss-conns", 200, "slidingsync: open connections, each holding a window of 20 rooms, for the memory row")
	fs.IntVar(&c.idleClients, "ss-idle-clients", 10, "slidingsync: clients long-polling (timeout -ss-idle-poll) in the idle CPU row")
	fs.DurationVar(&c.idlePoll, "ss-idle-poll", 30*time.Second, "slidingsync: the idle clients' long-poll timeout; CPU is summed from 2 s after they start to 3 s after it")
}

// quick shortens the slow parts; the account keeps its 1,000 rooms, which
// is what the first-window target is about, and the memory row its 200
// connections, as the GC trace it reads counts whole MB.
func (c *ssConfig) quick(set map[string]bool) {
	if !set["ss-msgs"] {
		c.msgs = 50
	}
	if !set["ss-idle-poll"] {
		c.idlePoll = 10 * time.Second
	}
}

func (c *ssConfig) valid() error {
	if c.rooms < 40 || c.fresh < 1 || c.msgs < 1 || c.conns < 1 || c.idleClients < 1 || c.idlePoll < 6*time.Second {
		return fmt.Errorf("slidingsync: -ss-rooms must be at least 40, the other -ss-* counts at least 1, -ss-idle-poll at least 6s")
	}
	return nil
}

// ssAccount is the section's data: one daemon, the owner in cfg.rooms
// rooms, and a second user joined to one of them.
type ssAccount struct {
	d      *daemon
	owner  *user
	sender *user
	rooms  []string // rooms[0] has the newest activity, rooms[1] the next, … down to rooms[19]
	target string   // the room the sender sends into: in the middle of the list
}

// ssSetup fills the account: the owner creates cfg.rooms rooms (every
// other one named, the rest unnamed, so both the name and the heroes
// paths are taken), posts one message in each with -workers requests in
// flight, then posts one more message in rooms[19], rooms[18], … rooms[0]
// in that order, so the top 20 by activity are known.
func (b *bench) ssSetup(ctx context.Context) (*ssAccount, error) {
	n := b.cfg.ss.rooms
	d, err := b.ssStart(ctx)
	if err != nil {
		return nil, err
	}
	a := &ssAccount{d: d, rooms: make([]string, n)}
	if a.owner, err = b.register(ctx, d, "ss-owner"); err != nil {
		return a, err
	}
	if a.sender, err = b.register(ctx, d, "ss-sender"); err != nil {
		return a, err
	}
	if err := parallel(n, 8, func(i int) error {
		body := map[string]any{"preset": "private_chat"}
		if i%2 == 0 {
			body["name"] = fmt.Sprintf("bench room %d", i)
		}
		var out struct {
			RoomID string `json:"room_id"`
		}
		err := call(ctx, b.hc, d, "POST", "/_matrix/client/v3/createRoom", a.owner.token, body, &out, reqTimeout)
		a.rooms[i] = out.RoomID
		return err
	}); err != nil {
		return a, fmt.Errorf("create rooms: %w", err)
	}
	if _, err := b.fill(ctx, []*user{a.owner}, a.rooms, n, func(k int) (*user, string) { return a.owner, a.rooms[k] }); err != nil {
		return a, fmt.Errorf("fill rooms: %w", err)
	}
	a.target = a.rooms[n/2]
	if err := call(ctx, b.hc, d, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(a.target)+"/invite", a.owner.token,
		map[string]string{"user_id": a.sender.id}, nil, reqTimeout); err != nil {
		return a, err
	}
	if err := b.join(ctx, a.sender, a.target); err != nil {
		return a, err
	}
	for i := 19; i >= 0; i-- {
		if _, err := b.send(ctx, a.owner, a.rooms[i], fmt.Sprintf("top %d", i)); err != nil {
			return a, err
		}
	}
	return a, nil
}

// ssStart starts a daemon as b.start does (loopback, federation and LAN
// discovery off), through env(1) so that it runs with GODEBUG=gctrace=1:
// the Go runtime then writes one line per garbage collection to the
// daemon's log, which the memory row reads. env execs hearth, so the pid
// is the daemon's.
func (b *bench) ssStart(ctx context.Context) (*daemon, error) {
	envPath, err := exec.LookPath("env")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	d, logf, err := b.newDaemonDir(fmt.Sprintf("http://127.0.0.1:%d", port))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	d, _, err = b.launch(ctx, d, logf, []string{envPath, "GODEBUG=gctrace=1", b.cfg.hearth, "run", "--data-dir", d.dataDir,
		"--client-listen", fmt.Sprintf("127.0.0.1:%d", port), "--registration", "open", "--server-name", "bench.local",
		"--key-store", "file", "--lan-discovery", "off", "--federation", "off"})
	return d, err
}

// benchSlidingSync measures the sliding sync endpoint on one daemon whose
// owner is in -ss-rooms rooms; see each ss* function for its row.
func benchSlidingSync(ctx context.Context, b *bench) []row {
	c := b.cfg.ss
	metrics := []string{
		fmt.Sprintf("sliding sync: first window (1 list, range [0,19], timeline_limit 1, 6 required_state entries incl. $LAZY) of an account in %s rooms, %d fresh connections: p50 / p95",
			count(c.rooms), c.fresh),
		fmt.Sprintf("sliding sync: send → long-poll response (pos, timeout 30 s, window of 20 + 5 extensions), %d msgs from another user: p50 / p99", c.msgs),
		fmt.Sprintf("sliding sync: daemon memory per open connection, %d connections (10 per device, %d per user) each holding a window of 20 rooms: live heap (RssAnon growth)", c.conns, ssConnsPerUser),
		fmt.Sprintf("sliding sync: idle daemon CPU, %d clients long-polling (timeout %s, re-polling at once)", c.idleClients, c.idlePoll),
	}
	targets := []string{"≤ 50 ms", "p50 ≤ 5 ms", "measure", "0 ticks between re-polls"}
	fail := func(from int, err error) []row {
		var rows []row
		for i := from; i < len(metrics); i++ {
			rows = append(rows, errRow(metrics[i], targets[i], err))
		}
		return rows
	}
	a, err := b.ssSetup(ctx)
	if a != nil && a.d != nil {
		defer b.stop(a.d)
	}
	if err != nil {
		return fail(0, err)
	}
	var rows []row
	steps := []func(context.Context, *bench, *ssAccount) (string, []num, error){ssFirstWindow, ssLatency, ssMemory, ssIdle}
	for i, step := range steps {
		b.logf("slidingsync: row %d", i+1)
		v, nums, err := step(ctx, b, a)
		if err != nil {
			// A later row needs the daemon in the state the earlier
			// ones leave it in; after an error the rest are not taken.
			return append(rows, fail(i, err)...)
		}
		// A PROBLEM (messages missing, connections forgotten, polls
		// answered early) means the figures are not what the row says:
		// the row fails.
		rows = append(rows, row{metric: metrics[i], value: v, target: targets[i], nums: nums, failed: strings.Contains(v, "; PROBLEM: ")})
	}
	return rows
}

// ssFirstWindow times -ss-fresh first requests, each on a new conn_id of
// the owner's device, sequentially: from the start of the POST to the
// decoded response. Each response must count all rooms in the list and
// carry exactly the 20 most recently active rooms, each with one timeline
// event and its create event; where the server gives bump_stamps, they
// must order those rooms as their activity does.
func ssFirstWindow(ctx context.Context, b *bench, a *ssAccount) (string, []num, error) {
	var ts []time.Duration
	size := 0
	for i := range b.cfg.ss.fresh {
		t := time.Now()
		r, err := b.ssSync(ctx, a.owner, "", 0, ssWindow(fmt.Sprintf("fresh-%d", i), false))
		if err != nil {
			return "", nil, err
		}
		ts = append(ts, time.Since(t))
		if err := a.checkWindow(r); err != nil {
			return "", nil, fmt.Errorf("connection %d: %w", i, err)
		}
		size = r.size
	}
	first := ts[0]
	return fmt.Sprintf("%s / %s (first %s, max %s; %.1f KiB response)",
			msNum(pct(ts, 50)), ms(pct(ts, 95)), msNum(first), msNum(ts[len(ts)-1]), float64(size)/1024),
		figs(fig("p50", msF(pct(ts, 50)), "ms"), fig("p95", msF(pct(ts, 95)), "ms")), nil
}

// checkWindow checks a first response against what ssSetup did.
func (a *ssAccount) checkWindow(r *ssResponse) error {
	if got := r.Lists["all"].Count; got != len(a.rooms) {
		return fmt.Errorf("list count %d, want %d", got, len(a.rooms))
	}
	if len(r.Rooms) != 20 {
		return fmt.Errorf("%d rooms in the window, want 20", len(r.Rooms))
	}
	stamps := make([]int64, 0, 20)
	for i, id := range a.rooms[:20] {
		room, ok := r.Rooms[id]
		if !ok {
			return fmt.Errorf("room %d by activity (%s) missing from the window", i, id)
		}
		if ev := room.events(); len(ev) != 1 || ev[0].Content.Body != fmt.Sprintf("top %d", i) {
			return fmt.Errorf("room %s: timeline %+v, want its one latest message", id, ev)
		}
		if !slices.ContainsFunc(room.RequiredState, func(e ssEvent) bool { return e.Type == "m.room.create" }) {
			return fmt.Errorf("room %s: required_state lacks m.room.create", id)
		}
		if room.BumpStamp != nil {
			stamps = append(stamps, *room.BumpStamp)
		}
	}
	if len(stamps) == 20 && !slices.IsSortedFunc(stamps, func(x, y int64) int { return cmp.Compare(y, x) }) {
		return fmt.Errorf("bump_stamps %v do not follow the rooms' activity", stamps)
	}
	return nil
}

// ssLatency: the owner's device keeps a connection (window of 20 plus the
// to_device, e2ee, account_data, receipts and typing extensions)
// long-polling with timeout 30 s and re-polls with each response's pos at
// once. The sender posts -ss-msgs messages into the target room, which
// starts outside the window (the first message brings it in). Each send
// waits for the previous message to arrive, then -ss-interval. Latency is
// from just before the PUT to the moment the poller has decoded the
// response holding the message (this process's monotonic clock).
func ssLatency(ctx context.Context, b *bench, a *ssAccount) (string, []num, error) {
	msgs := b.cfg.ss.msgs
	req := ssWindow("latency", true)
	r, err := b.ssSync(ctx, a.owner, "", 0, req)
	if err != nil {
		return "", nil, err
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := make(chan int, msgs)
	var pollErr error
	var responses, limited atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		pos := r.Pos
		for pctx.Err() == nil {
			r, err := b.ssSync(pctx, a.owner, pos, 30*time.Second, req)
			if err != nil {
				if pctx.Err() == nil {
					pollErr = err
					cancel()
				}
				return
			}
			responses.Add(1)
			pos = r.Pos
			room, ok := r.Rooms[a.target]
			if !ok {
				continue
			}
			if room.Limited && !room.Initial {
				limited.Add(1)
			}
			for _, ev := range room.events() {
				if rest, ok := strings.CutPrefix(ev.Content.Body, "ss "); ok && ev.Type == "m.room.message" {
					if seq, err := strconv.Atoi(rest); err == nil {
						select {
						case got <- seq:
						case <-pctx.Done():
							return
						}
					}
				}
			}
		}
	}()
	if err := sleep(ctx, 200*time.Millisecond); err != nil { // let the poll park
		return "", nil, err
	}
	cpu := startCPU(a.d.pid)
	var lat, sendLat []time.Duration
	missing, stray := 0, 0
	for seq := 0; seq < msgs; seq++ {
		t := time.Now()
		if _, err := b.send(ctx, a.sender, a.target, fmt.Sprintf("ss %d", seq)); err != nil {
			return "", nil, err
		}
		sendLat = append(sendLat, time.Since(t))
		wait := time.NewTimer(5 * time.Second)
	recv:
		for {
			select {
			case s := <-got:
				if s != seq {
					stray++ // a duplicate or an earlier message re-sent
					continue
				}
				lat = append(lat, time.Since(t))
			case <-wait.C:
				missing++
			case <-pctx.Done():
				wait.Stop()
				<-done
				if pollErr != nil {
					return "", nil, pollErr
				}
				return "", nil, pctx.Err()
			}
			break recv
		}
		wait.Stop()
		if missing >= 3 {
			return "", nil, fmt.Errorf("%d messages never reached the long poll in 5 s each", missing)
		}
		if err := sleep(ctx, b.cfg.ss.interval); err != nil {
			return "", nil, err
		}
	}
	cpuUse := cpu.String()
	cancel()
	<-done
	if len(lat) == 0 {
		return "", nil, fmt.Errorf("no message reached the long poll")
	}
	n := len(lat)
	v := fmt.Sprintf("%s / %s (%d delivered in %d responses, max %s; sender's PUT p50 %s; %s)",
		msNum(pct(lat, 50)), ms(pct(lat, 99)), n, responses.Load(), msNum(lat[n-1]), ms(pct(sendLat, 50)), cpuUse)
	if missing > 0 || stray > 0 || limited.Load() > 0 {
		v += fmt.Sprintf("; PROBLEM: %d missing, %d duplicate, %d limited timelines", missing, stray, limited.Load())
	}
	return v, figs(fig("p50", msF(pct(lat, 50)), "ms"), fig("p99", msF(pct(lat, 99)), "ms")), nil
}

// ssIdle runs -ss-idle-clients clients, one device of the owner each, each
// a connection with the window of 20 rooms and the 5 extensions that
// long-polls with timeout -ss-idle-poll and re-polls with the new pos as
// soon as a response comes. Nothing else happens. It sums the daemon's
// utime+stime over two windows: "between", from 2 s after the clients'
// first long polls began to 3 s before they expire, where nothing should
// run at all; and "re-polls", the next 6 s, which hold every client's
// expiry and its re-poll (one incremental request with nothing new each),
// so those ticks divided by the re-polls are the cost of one. A response
// well before the poll timeout is an early wake-up, which an idle server
// should never cause.
func ssIdle(ctx context.Context, b *bench, a *ssAccount) (string, []num, error) {
	n, poll := b.cfg.ss.idleClients, b.cfg.ss.idlePoll
	devices, err := b.ssDevices(ctx, a, n)
	if err != nil {
		return "", nil, err
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var repolls, early atomic.Int64
	var pollErr atomic.Pointer[error] // the first client's error
	var wg, started sync.WaitGroup
	for i := range n {
		wg.Add(1)
		started.Add(1)
		go func() {
			defer wg.Done()
			req := ssWindow("idle", true)
			r, err := b.ssSync(pctx, devices[i], "", 0, req)
			started.Done()
			for err == nil && pctx.Err() == nil {
				t := time.Now()
				r, err = b.ssSync(pctx, devices[i], r.Pos, poll, req)
				if err == nil {
					if time.Since(t) < poll-500*time.Millisecond {
						early.Add(1)
					} else {
						repolls.Add(1)
					}
				}
			}
			if err != nil && pctx.Err() == nil {
				pollErr.CompareAndSwap(nil, &err)
			}
		}()
	}
	started.Wait() // every client's first long poll starts now
	t0 := time.Now()
	ticksAt := func(at time.Time) (int64, error) {
		if err := sleep(ctx, time.Until(at)); err != nil {
			return 0, err
		}
		if p := pollErr.Load(); p != nil {
			return 0, *p
		}
		return cpuTicks(a.d.pid)
	}
	var c [3]int64
	for i, at := range []time.Time{t0.Add(2 * time.Second), t0.Add(poll - 3*time.Second), t0.Add(poll + 3*time.Second)} {
		if c[i], err = ticksAt(at); err != nil {
			return "", nil, err
		}
		if i == 1 && repolls.Load() > 0 {
			return "", nil, fmt.Errorf("%d polls expired before %s", repolls.Load(), poll-3*time.Second)
		}
	}
	cancel()
	wg.Wait()
	rp := repolls.Load()
	v := fmt.Sprintf("between re-polls: %d ticks of 10 ms in %.0f s; the %d re-polls: %d ticks in 6 s",
		c[1]-c[0], (poll - 5*time.Second).Seconds(), rp, c[2]-c[1])
	if rp > 0 {
		v += fmt.Sprintf(" (≈ %.0f ms CPU each)", float64(c[2]-c[1])*10/float64(rp))
	}
	v += fmt.Sprintf("; %d early wake-ups", early.Load())
	if rp != int64(n) {
		v += fmt.Sprintf("; PROBLEM: %d re-polls, want %d", rp, n)
	}
	return v, figs(fig("between re-polls", float64(c[1]-c[0]), "ticks"), fig("re-polls", float64(c[2]-c[1]), "ticks")), nil
}
