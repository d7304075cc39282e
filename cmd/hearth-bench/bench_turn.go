package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/turn/v4"
)

// benchTURN measures the built-in TURN relay (issue 12): what an idle
// relay costs (two daemons side by side for -idle-cpu-window, one with
// the relay on loopback, one without: CPU ticks and the context switches
// of all their threads, each a wake-up), and the daemon's CPU to relay
// 1 MB/s (1,000 packets of 1,000 bytes a second) from one allocation to
// another for 10 s, with credentials from /voip/turnServer.
func benchTURN(ctx context.Context, b *bench) []row {
	idleMetric := fmt.Sprintf("TURN relay idle, no allocation, %s: CPU ticks / context switches, relay on vs off", b.cfg.idleCPUWindow)
	relayMetric := "TURN relaying 1 MB/s through one allocation for 10 s: daemon CPU, packets delivered"
	const idleTarget, relayTarget = "0 more than off", "≤ 10 % of a core"
	port, err := freePort()
	if err != nil {
		return []row{errRow(idleMetric, idleTarget, err), errRow(relayMetric, relayTarget, err)}
	}
	on, _, err := b.start(ctx, "--turn", "on", "--turn-listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--turn-allow-networks", "127.0.0.0/8", "--turn-bandwidth-bytes", "0")
	if err != nil {
		return []row{errRow(idleMetric, idleTarget, err), errRow(relayMetric, relayTarget, err)}
	}
	defer b.stop(on)
	off, _, err := b.start(ctx, "--turn", "off")
	if err != nil {
		return []row{errRow(idleMetric, idleTarget, err), errRow(relayMetric, relayTarget, err)}
	}
	idle := idleRow(ctx, b, idleMetric, idleTarget, on, off)
	b.stop(off)
	return []row{idle, relayRow(ctx, b, relayMetric, relayTarget, on)}
}

func idleRow(ctx context.Context, b *bench, metric, target string, on, off *daemon) row {
	// Start-up's tail (the first GC, the owner's password hash, freeing
	// memory) is not the relay's: the window starts once both have settled.
	if err := sleep(ctx, idleSettle); err != nil {
		return errRow(metric, target, err)
	}
	c0on, e1 := cpuTicks(on.pid)
	c0off, e2 := cpuTicks(off.pid)
	s0on, e3 := ctxSwitches(on.pid)
	s0off, e4 := ctxSwitches(off.pid)
	if err := firstErr(e1, e2, e3, e4, sleep(ctx, b.cfg.idleCPUWindow), on.alive(), off.alive()); err != nil {
		return errRow(metric, target, err)
	}
	c1on, e1 := cpuTicks(on.pid)
	c1off, e2 := cpuTicks(off.pid)
	s1on, e3 := ctxSwitches(on.pid)
	s1off, e4 := ctxSwitches(off.pid)
	if err := firstErr(e1, e2, e3, e4); err != nil {
		return errRow(metric, target, err)
	}
	return row{metric: metric, target: target,
		value: fmt.Sprintf("on: %d ticks / %d switches; off: %d ticks / %d switches", c1on-c0on, s1on-s0on, c1off-c0off, s1off-s0off),
		nums: figs(fig("on", float64(c1on-c0on), "ticks"), fig("off", float64(c1off-c0off), "ticks"),
			fig("on", float64(s1on-s0on), "switches"), fig("off", float64(s1off-s0off), "switches"))}
}

// idleSettle is how long the idle window waits after both daemons are ready.
const idleSettle = 10 * time.Second

func relayRow(ctx context.Context, b *bench, metric, target string, d *daemon) row {
	u, err := b.register(ctx, d, "caller")
	if err != nil {
		return errRow(metric, target, err)
	}
	var creds struct {
		Username string   `json:"username"`
		Password string   `json:"password"`
		URIs     []string `json:"uris"`
	}
	if err := call(ctx, b.hc, d, "GET", "/_matrix/client/v3/voip/turnServer", u.token, nil, &creds, reqTimeout); err != nil {
		return errRow(metric, target, err)
	}
	if len(creds.URIs) == 0 {
		return errRow(metric, target, fmt.Errorf("/voip/turnServer named no TURN server"))
	}
	addr, _, _ := strings.Cut(strings.TrimPrefix(creds.URIs[0], "turn:"), "?")
	var clients []*turn.Client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	alloc := func() (*turn.Client, net.PacketConn, error) {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		c, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: addr, TURNServerAddr: addr, Conn: pc,
			Username: creds.Username, Password: creds.Password})
		if err != nil {
			return nil, nil, err
		}
		clients = append(clients, c)
		if err := c.Listen(); err != nil {
			return nil, nil, err
		}
		relay, err := c.Allocate()
		return c, relay, err
	}
	ca, ra, err := alloc()
	if err != nil {
		return errRow(metric, target, err)
	}
	cb, rb, err := alloc()
	if err != nil {
		return errRow(metric, target, err)
	}
	if err := firstErr(ca.CreatePermission(rb.LocalAddr()), cb.CreatePermission(ra.LocalAddr())); err != nil {
		return errRow(metric, target, err)
	}
	var got atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := rb.ReadFrom(buf); err != nil {
				return
			}
			got.Add(1)
		}
	})
	// Warm-up: the first packet also installs B's view of the permission.
	ra.WriteTo(make([]byte, 10), rb.LocalAddr())
	time.Sleep(100 * time.Millisecond)
	got.Store(0)
	const window, perTick = 10 * time.Second, 10 // 10 packets every 10 ms
	pkt := make([]byte, 1000)
	c0, err := cpuTicks(d.pid)
	if err != nil {
		return errRow(metric, target, err)
	}
	t0 := time.Now()
	sent := 0
	tick := time.NewTicker(10 * time.Millisecond)
	for time.Since(t0) < window && ctx.Err() == nil {
		<-tick.C
		for i := 0; i < perTick; i++ {
			if _, err := ra.WriteTo(pkt, rb.LocalAddr()); err == nil {
				sent++
			}
		}
	}
	tick.Stop()
	wall := time.Since(t0)
	time.Sleep(200 * time.Millisecond) // the last packets in flight
	c1, err := cpuTicks(d.pid)
	ra.Close()
	rb.Close()
	wg.Wait()
	if err != nil {
		return errRow(metric, target, err)
	}
	cpu := time.Duration(c1-c0) * (time.Second / clockTicks)
	return row{metric: metric, target: target, value: fmt.Sprintf("%d ms CPU in %.1f s (%.1f %% of a core); %d of %d packets (%.2f MB/s) delivered",
		cpu.Milliseconds(), wall.Seconds(), 100*cpu.Seconds()/wall.Seconds(), got.Load(), sent, float64(got.Load())*1000/wall.Seconds()/1e6),
		nums: figs(fig("", 100*cpu.Seconds()/wall.Seconds(), "% of a core"))}
}

// ctxSwitches sums the voluntary and involuntary context switches of every
// thread of the process: each is a time the thread went to sleep or was
// put to sleep, so over an idle window they count its wake-ups.
func ctxSwitches(pid int) (int64, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("threads of %d: %v", pid, err)
	}
	var n int64
	for _, p := range tasks {
		data, err := os.ReadFile(p)
		if err != nil {
			continue // a thread that just ended
		}
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
				x, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += x
			}
		}
	}
	return n, nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
