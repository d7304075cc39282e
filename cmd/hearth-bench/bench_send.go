package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// benchSendLatency measures PUT /send round trips for one client sending
// sequentially into one room: each request waits for the previous answer,
// so every send pays a whole commit (build, sign, bbolt write, fsync)
// alone, with nothing to group-commit with. The first 50 sends are a
// warm-up and not counted.
func benchSendLatency(ctx context.Context, b *bench) []row {
	metric := fmt.Sprintf("PUT /send latency, 1 client sequential, %d sends: p50 / p99", b.cfg.sends)
	const target = "p50 ≤ 3 ms"
	d, _, err := b.start(ctx)
	if err != nil {
		return []row{errRow(metric, target, err)}
	}
	defer b.stop(d)
	u, err := b.register(ctx, d, "sender")
	if err != nil {
		return []row{errRow(metric, target, err)}
	}
	roomID, err := b.createRoom(ctx, u)
	if err != nil {
		return []row{errRow(metric, target, err)}
	}
	const warmup = 50
	lat := make([]time.Duration, 0, b.cfg.sends)
	for i := 0; i < warmup+b.cfg.sends; i++ {
		t := time.Now()
		if _, err := b.send(ctx, u, roomID, fmt.Sprintf("latency %d", i)); err != nil {
			return []row{errRow(metric, target, err)}
		}
		if i >= warmup {
			lat = append(lat, time.Since(t))
		}
	}
	p50, p99 := pct(lat, 50), pct(lat, 99)
	return []row{{metric: metric, value: fmt.Sprintf("%s / %s (max %s)", msNum(p50), ms(p99), msNum(lat[len(lat)-1])), target: target,
		nums: figs(fig("p50", msF(p50), "ms"), fig("p99", msF(p99), "ms"))}}
}

// benchThroughput measures sustained sends: -senders users, each in its
// own room (so no room is contended and events can be group-committed
// freely), each sending back-to-back for -duration. The rate is successful
// sends divided by the wall time of the run; the per-send latency under
// that load is reported alongside.
// Then the same with every sender in one room (benchOneRoom).
func benchThroughput(ctx context.Context, b *bench) []row {
	return []row{benchOwnRooms(ctx, b), benchOneRoom(ctx, b)}
}

func benchOwnRooms(ctx context.Context, b *bench) row {
	metric := fmt.Sprintf("sustained sends, %d concurrent senders, 1 room each, %s", b.cfg.senders, b.cfg.duration)
	return b.throughputRow(ctx, metric, "≥ 5000 events/s", "tp", func(users []*user) ([]string, error) {
		rooms := make([]string, len(users))
		err := parallel(len(users), 8, func(i int) (err error) { rooms[i], err = b.createRoom(ctx, users[i]); return })
		return rooms, err
	})
}

// benchOneRoom is benchThroughput with every sender in the same room: the
// hot-room case, where every send extends one chain of prev_events.
func benchOneRoom(ctx context.Context, b *bench) row {
	metric := fmt.Sprintf("sustained sends, %d concurrent senders, one room, %s", b.cfg.senders, b.cfg.duration)
	return b.throughputRow(ctx, metric, "≥ 3000 events/s", "hot", func(users []*user) ([]string, error) {
		roomID, err := b.createRoom(ctx, users[0])
		if err != nil {
			return nil, err
		}
		rooms := make([]string, len(users))
		rooms[0] = roomID
		for i := 1; i < len(users); i++ {
			if err := b.join(ctx, users[i], roomID); err != nil {
				return nil, err
			}
			rooms[i] = roomID
		}
		return rooms, nil
	})
}

// throughputRow (target: issue 15's) starts a daemon, registers -senders users (named from
// prefix), gives each the room roomsFor says, and has them all send
// back-to-back for -duration: the rate, the per-send latency under that
// load and the daemon's CPU.
func (b *bench) throughputRow(ctx context.Context, metric, target, prefix string, roomsFor func([]*user) ([]string, error)) row {
	d, _, err := b.start(ctx)
	if err != nil {
		return errRow(metric, target, err)
	}
	defer b.stop(d)
	users, err := b.registerMany(ctx, d, prefix, b.cfg.senders)
	if err != nil {
		return errRow(metric, target, err)
	}
	rooms, err := roomsFor(users)
	if err != nil {
		return errRow(metric, target, err)
	}
	cpu := startCPU(d.pid)
	rate, lat, err := b.sendFor(ctx, users, rooms, b.cfg.duration)
	if err == nil && len(lat) == 0 {
		err = fmt.Errorf("no send completed")
	}
	if err != nil {
		return errRow(metric, target, err)
	}
	v := fmt.Sprintf("%.0f events/s (send p50 %s, p99 %s, max %s; %s)", rate, msNum(pct(lat, 50)), msNum(pct(lat, 99)),
		ms(lat[len(lat)-1]), cpu)
	return row{metric: metric, value: v, target: target, nums: figs(fig("", rate, "events/s"))}
}

// sendFor runs one goroutine per user, user i sending into rooms[i]
// back-to-back until dur has passed, and returns events/s and every
// send's latency. Any failed send fails the run.
func (b *bench) sendFor(ctx context.Context, users []*user, rooms []string, dur time.Duration) (float64, []time.Duration, error) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		all   []time.Duration
		count atomic.Int64
		first error
		once  sync.Once
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	end := start.Add(dur)
	for i := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			for j := 0; time.Now().Before(end); j++ {
				t := time.Now()
				if _, err := b.send(ctx, users[i], rooms[i], fmt.Sprintf("load %d/%d", i, j)); err != nil {
					once.Do(func() { first = err; cancel() })
					break
				}
				lat = append(lat, time.Since(t))
				count.Add(1)
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if first != nil {
		return 0, nil, first
	}
	return float64(count.Load()) / elapsed.Seconds(), all, nil
}
