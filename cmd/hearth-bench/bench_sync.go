package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// syncFilter raises the timeline limit so a poller that falls behind gets
// every message instead of a "limited" gap.
const syncFilter = `{"room":{"timeline":{"limit":100}}}`

// benchSyncDelivery measures how long a message takes to reach clients
// that are waiting in /sync. -syncers users join one room and each runs a
// /sync?since=…&timeout=30000 loop. Once they are all parked, one more
// user sends -sync-msgs messages sequentially, -sync-interval apart, each
// with its sequence number in the body. Latency is, per (client, message),
// the time from just before the sender's PUT /send to the moment that
// client's /sync response containing it has been read and decoded. All
// clocks are this process's monotonic clock.
//
// A second row runs the same clients and messages against the floor
// server (floor.go): what the machine itself costs for this shape; a
// third is the first minus the second (floorDistance).
func benchSyncDelivery(ctx context.Context, b *bench) []row {
	n, msgs := b.cfg.syncers, b.cfg.syncMsgs
	metric := fmt.Sprintf("send → /sync delivery, %d long-polling clients in 1 room, %d msgs %s apart: p50 / p99", n, msgs, b.cfg.syncInterval)
	const target = "p50 ≤ 3 ms, p99 ≤ 10 ms" // issue 15
	floorMetric := "the same clients and messages against a minimal server (floor.go: one fsynced bbolt commit per message, one shared response per span): p50 / p99"
	const floorTarget = "reference: the machine's floor for the row above"
	hearth := b.hearthDelivery(ctx, metric, target)
	floor := b.floorDelivery(ctx, floorMetric, floorTarget)
	manyMetric := fmt.Sprintf("send → /sync delivery to one user in %d rooms, %d msgs into one of them %s apart: p50 / p99", manyRooms, msgs, b.cfg.syncInterval)
	many := b.manyRoomsDelivery(ctx, manyMetric, "measure")
	return []row{hearth, floor, floorDistance(hearth, floor), many}
}

// floorDistance is the Hearth row's distance to the floor row of the same
// run. The two run a few seconds apart, so they share the machine's state,
// which moves the floor itself by up to a millisecond within minutes
// (docs/performance.md, "Delivery: inside the commit"): the median of the
// runs' differences tells a change in Hearth from a change in the machine
// better than either row's median.
func floorDistance(hearth, floor row) row {
	const metric = "the first row minus the floor row, each run: p50 / p99"
	const target = "measure: what Hearth adds to the machine's floor"
	if hearth.failed || floor.failed || len(hearth.nums) < 2 || len(floor.nums) < 2 {
		return row{metric: metric, target: target, value: "no figures: a row above failed", failed: true}
	}
	p50, p99 := hearth.nums[0].V-floor.nums[0].V, hearth.nums[1].V-floor.nums[1].V
	return row{metric: metric, target: target, value: fmt.Sprintf("%.2f / %.2f ms", p50, p99),
		nums: figs(fig("p50", p50, "ms"), fig("p99", p99, "ms"))}
}

// manyRooms is how many rooms the user of the third row is in: an
// ordinary account (Element users commonly have hundreds), whose every
// long poll is woken by a message in any one of them.
const manyRooms = 300

// manyRoomsDelivery is the delivery row of one long-polling user in
// manyRooms rooms, the messages going into one of them: what a woken
// /sync costs with the user's other rooms quiet.
func (b *bench) manyRoomsDelivery(ctx context.Context, metric, target string) row {
	d, _, err := b.start(ctx)
	if err != nil {
		return errRow(metric, target, err)
	}
	defer b.stop(d)
	sender, err := b.register(ctx, d, "many-sender")
	if err != nil {
		return errRow(metric, target, err)
	}
	u, err := b.register(ctx, d, "many")
	if err != nil {
		return errRow(metric, target, err)
	}
	rooms := make([]string, manyRooms)
	if err := parallel(manyRooms, 4, func(i int) error {
		id, err := b.createRoom(ctx, u)
		rooms[i] = id
		return err
	}); err != nil {
		return errRow(metric, target, err)
	}
	if err := b.join(ctx, sender, rooms[0]); err != nil {
		return errRow(metric, target, err)
	}
	return b.deliveryRow(ctx, metric, target, "", d, sender, []*user{u}, rooms[0])
}

// hearthDelivery is the delivery row of a Hearth daemon.
func (b *bench) hearthDelivery(ctx context.Context, metric, target string) row {
	n := b.cfg.syncers
	d, _, err := b.start(ctx)
	if err != nil {
		return errRow(metric, target, err)
	}
	defer b.stop(d)
	sender, err := b.register(ctx, d, "sync-sender")
	if err != nil {
		return errRow(metric, target, err)
	}
	users, err := b.registerMany(ctx, d, "sync", n)
	if err != nil {
		return errRow(metric, target, err)
	}
	roomID, err := b.createRoom(ctx, sender)
	if err != nil {
		return errRow(metric, target, err)
	}
	if err := parallel(n, 8, func(i int) error { return b.join(ctx, users[i], roomID) }); err != nil {
		return errRow(metric, target, err)
	}
	return b.deliveryRow(ctx, metric, target, "", d, sender, users, roomID)
}

// floorDelivery is the delivery row of the floor server, whose users are
// tokens it takes on trust.
func (b *bench) floorDelivery(ctx context.Context, metric, target string) row {
	d, err := b.startFloor(ctx)
	if err != nil {
		return errRow(metric, target, err)
	}
	defer b.stop(d)
	users := make([]*user, b.cfg.syncers)
	for i := range users {
		users[i] = &user{d: d, id: fmt.Sprintf("@floor%d:bench.local", i), token: fmt.Sprintf("floor%d", i)}
	}
	sender := &user{d: d, id: "@floor:bench.local", token: "floor-sender"}
	return b.deliveryRow(ctx, metric, target, "floor server", d, sender, users, floorRoom)
}

// deliveryRow runs the measurement on d, named server in the CPU figures
// ("" for hearth): users poll, sender sends into roomID, which they all
// see.
func (b *bench) deliveryRow(ctx context.Context, metric, target, server string, d *daemon, sender *user, users []*user, roomID string) row {
	n, msgs := len(users), b.cfg.syncMsgs
	fail := func(err error) row { return errRow(metric, target, err) }
	tokens := make([]string, n)
	if err := parallel(n, 8, func(i int) error {
		r, err := b.sync(ctx, users[i], "", syncFilter, 0)
		tokens[i] = r.NextBatch
		return err
	}); err != nil {
		return fail(err)
	}

	// Receivers: recv[i][seq] is when client i got message seq.
	recv := make([][]time.Time, n)
	var dups, limited, responses atomic.Int64
	var recvErr error
	var errOnce sync.Once
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for i := range n {
		recv[i] = make([]time.Time, msgs)
		wg.Add(1)
		go func() {
			defer wg.Done()
			since, got := tokens[i], 0
			for iter := 0; got < msgs && iter < 10*msgs+100 && pctx.Err() == nil; iter++ {
				r, err := b.sync(pctx, users[i], since, syncFilter, 30*time.Second)
				if err != nil {
					if pctx.Err() == nil {
						errOnce.Do(func() { recvErr = err })
					}
					return
				}
				now := time.Now()
				responses.Add(1)
				since = r.NextBatch
				jr, ok := r.Rooms.Join[roomID]
				if !ok {
					continue
				}
				if jr.Timeline.Limited {
					limited.Add(1)
				}
				for _, ev := range jr.Timeline.Events {
					rest, ok := strings.CutPrefix(ev.Content.Body, "sync ")
					seq, err := strconv.Atoi(rest)
					if ev.Type != "m.room.message" || !ok || err != nil || seq < 0 || seq >= msgs {
						continue
					}
					if !recv[i][seq].IsZero() {
						dups.Add(1)
						continue
					}
					recv[i][seq] = now
					got++
				}
			}
		}()
	}
	if err := sleep(ctx, time.Second); err != nil { // let every poller park
		return fail(err)
	}

	cpu, resp0 := startCPU(d.pid), responses.Load()
	cpu.name = server
	sent := make([]time.Time, msgs)
	var sendLat []time.Duration
	for seq := range msgs {
		sent[seq] = time.Now()
		if _, err := b.send(ctx, sender, roomID, fmt.Sprintf("sync %d", seq)); err != nil {
			cancel()
			wg.Wait()
			return fail(err)
		}
		sendLat = append(sendLat, time.Since(sent[seq]))
		if err := sleep(ctx, b.cfg.syncInterval); err != nil {
			return fail(err)
		}
	}
	cpuUse := cpu.String()
	// The daemon's CPU per /sync response (the sends' own cost shared
	// among them): unlike wall-clock latency, barely moved by the load of
	// other processes on the machine.
	if t, err := cpu.srvCPU(); err == nil {
		if n := responses.Load() - resp0; n > 0 {
			cpuUse += fmt.Sprintf(", %d µs per /sync response", t.Microseconds()/n)
		}
	}
	// Give stragglers up to 30 s, then stop the pollers.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
	case <-ctx.Done():
	}
	cancel()
	<-done
	if recvErr != nil {
		return fail(recvErr)
	}

	// first is, per message, its earliest delivery: the send's own path,
	// apart from the fan-out to the other clients.
	var lat, first []time.Duration
	missing := 0
	for seq := range msgs {
		earliest := time.Duration(-1)
		for i := range n {
			if recv[i][seq].IsZero() {
				missing++
				continue
			}
			l := recv[i][seq].Sub(sent[seq])
			lat = append(lat, l)
			if earliest < 0 || l < earliest {
				earliest = l
			}
		}
		if earliest >= 0 {
			first = append(first, earliest)
		}
	}
	if len(lat) == 0 {
		return fail(fmt.Errorf("no message was delivered (%d missing)", missing))
	}
	v := fmt.Sprintf("%s / %s (%d deliveries, max %s; first client p50 %s; sender's PUT p50 %s; %s)",
		msNum(pct(lat, 50)), ms(pct(lat, 99)), len(lat), msNum(lat[len(lat)-1]), ms(pct(first, 50)), ms(pct(sendLat, 50)), cpuUse)
	r := row{metric: metric, value: v, target: target, nums: figs(fig("p50", msF(pct(lat, 50)), "ms"), fig("p99", msF(pct(lat, 99)), "ms"))}
	if missing > 0 || dups.Load() > 0 || limited.Load() > 0 {
		r.value += fmt.Sprintf("; PROBLEM: %d missing, %d duplicate, %d limited timelines", missing, dups.Load(), limited.Load())
		r.failed = missing > 0 || dups.Load() > 0
	}
	return r
}
