package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hearth-chat/hearth/internal/netns"
)

// benchColdStart measures cold start: wall time from exec of `hearth run`
// to the first 200 from GET /_matrix/client/versions, on a fresh data dir
// each time (so it includes creating the bbolt file, generating the
// signing key and hashing the owner's first password). Median of -starts.
func benchColdStart(ctx context.Context, b *bench) []row {
	metric := fmt.Sprintf("cold start, exec → first 200 /versions (median of %d, fresh data dir)", b.cfg.starts)
	const target = "≤ 150 ms"
	var ts []time.Duration
	for i := 0; i < b.cfg.starts; i++ {
		d, t, err := b.start(ctx)
		if err != nil {
			return []row{errRow(metric, target, err)}
		}
		b.stop(d)
		ts = append(ts, t)
	}
	slices.Sort(ts)
	v := fmt.Sprintf("%s (min %s, max %s)", ms(ts[len(ts)/2]), msNum(ts[0]), msNum(ts[len(ts)-1]))
	return []row{{metric: metric, value: v, target: target, nums: figs(fig("", msF(ts[len(ts)/2]), "ms"))}}
}

// benchIdle starts one fresh daemon and leaves it alone: no client is
// connected, so nothing but the daemon's own timers can run. Idle RSS is
// VmRSS (resident memory) at -idle-rss-after past ready. Idle CPU is the
// utime+stime delta over -idle-cpu-window, as a percentage of one core;
// that window starts at ready and includes the RSS reading (reading /proc
// does not wake the daemon), so startup's own CPU is excluded but its
// after-effects (e.g. the first GC) are counted.
//
// It does so for two daemons at once, each over its own window from its
// own ready and read from its own /proc entry: the bench's usual daemon
// (loopback only, LAN discovery and federation off) and a daemon with the
// default configuration (`hearth run --data-dir DIR` and nothing else: LAN
// discovery on, federation lan, TURN auto) alone on a LAN of network
// namespaces (internal/netns), so its mDNS stays on that bridge; where
// namespaces cannot be made (not Linux, not root) those two rows say
// "skipped: why". Until December 2026 the two ran one after the other (two
// windows a run); they run side by side since, as neither wakes the other
// (separate processes, no traffic between them: the first is on loopback
// of the root namespace, the second on a bridge it has alone) and both use
// about 0 ticks, so neither competes with the other for the CPU, and both
// are stopped after both windows (a stop closes the bench client's idle
// connections, the other daemon's too). The rows and their figures are
// unchanged.
func benchIdle(ctx context.Context, b *bench) []row {
	rssMetric := fmt.Sprintf("idle RSS, %s after ready (VmRSS)", b.cfg.idleRSSAfter)
	cpuMetric := fmt.Sprintf("idle CPU over %s (utime+stime, %% of one core)", b.cfg.idleCPUWindow)
	const rssTarget, cpuTarget = "≤ 30 MB", "≈ 0"
	dRSS := fmt.Sprintf("idle RSS, default configuration (LAN discovery on, federation lan, TURN auto; netns), %s after ready (VmRSS)", b.cfg.idleRSSAfter)
	dCPU := fmt.Sprintf("idle CPU, default configuration (netns), over %s from ready (utime+stime, %% of one core)", b.cfg.idleCPUWindow)
	const dRSSTarget, dCPUTarget = "≤ 20 MiB", "0 ticks"

	var wg sync.WaitGroup
	var rows, dRows []row
	var d1, d2 *daemon
	wg.Add(1)
	go func() {
		defer wg.Done()
		rows, d1 = idleRows(ctx, b, rssMetric, rssTarget, cpuMetric, cpuTarget, func() (*daemon, error) {
			d, _, err := b.start(ctx)
			return d, err
		})
	}()
	lan, err := netns.New()
	if err == nil {
		defer lan.Close()
		var h *netns.Host
		if h, err = lan.AddHost("idle-laptop"); err == nil {
			err = settled(ctx, h)
		}
		if err == nil {
			dRows, d2 = idleRows(ctx, b, dRSS, dRSSTarget, dCPU, dCPUTarget, func() (*daemon, error) {
				d, _, err := b.startNS(ctx, h)
				return d, err
			})
		}
	}
	wg.Wait()
	// Both are stopped only once both windows are over: stop closes the
	// bench client's idle connections, every daemon's, so the first
	// daemon's stop at the end of its window closed the second's
	// keep-alive connection (its ready request's) inside the second's
	// window, a wake-up (an EOF to read and a close) of 0.1–0.3 ms that
	// was the bench's, not the daemon's.
	for _, d := range []*daemon{d1, d2} {
		if d != nil {
			b.stop(d)
		}
	}
	switch {
	case err == nil:
	case errors.Is(err, netns.ErrUnavailable) || lan != nil:
		dRows = []row{{metric: dRSS, target: dRSSTarget, value: "skipped: " + err.Error()},
			{metric: dCPU, target: dCPUTarget, value: "skipped: " + err.Error()}}
	default:
		dRows = []row{errRow(dRSS, dRSSTarget, err), errRow(dCPU, dCPUTarget, err)}
	}
	return append(rows, dRows...)
}

// settled waits until the new host's IPv6 addresses have finished
// duplicate address detection (RFC 4862 §5.4: the link-local address is
// "tentative" for about a second after the link comes up), as a real
// machine's have long before Hearth starts. Started at once, the daemon
// heard the address become usable 1–2 s into the idle window (a netlink
// event, then its network monitor and LAN discovery reading the
// interfaces again, about 0.5 ms of the row's CPU): the namespace being
// new, not the daemon being idle.
func settled(ctx context.Context, h *netns.Host) error {
	for start := time.Now(); ; {
		out, err := h.Exec("ip", "-6", "addr", "show", "tentative")
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) == "" {
			return nil
		}
		if time.Since(start) > 10*time.Second {
			return fmt.Errorf("%s: IPv6 addresses still tentative after 10 s: %s", h.NS, out)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// idleRows starts a daemon with start and takes benchIdle's two readings.
// It returns the daemon still running (nil if it did not start), for the
// caller to stop.
func idleRows(ctx context.Context, b *bench, rssMetric, rssTarget, cpuMetric, cpuTarget string, start func() (*daemon, error)) ([]row, *daemon) {
	d, err := start()
	if err != nil {
		return []row{errRow(rssMetric, rssTarget, err), errRow(cpuMetric, cpuTarget, err)}, nil
	}
	t0 := time.Now()
	c0, err := cpuTicks(d.pid)
	ns0 := schedNS(d.pid)
	if err != nil {
		return []row{errRow(rssMetric, rssTarget, err), errRow(cpuMetric, cpuTarget, err)}, d
	}
	rssRow := row{metric: rssMetric, target: rssTarget}
	cpuRow := row{metric: cpuMetric, target: cpuTarget}
	// Two timed events: the RSS reading and the end of the CPU window,
	// taken in whichever order they fall.
	rssAt, cpuAt := t0.Add(b.cfg.idleRSSAfter), t0.Add(b.cfg.idleCPUWindow)
	for _, ev := range sortedEvents(rssAt, cpuAt) {
		if err := sleep(ctx, time.Until(ev)); err != nil {
			return []row{errRow(rssMetric, rssTarget, err), errRow(cpuMetric, cpuTarget, err)}, d
		}
		if err := d.alive(); err != nil {
			return []row{errRow(rssMetric, rssTarget, err), errRow(cpuMetric, cpuTarget, err)}, d
		}
		if ev.Equal(rssAt) && rssRow.value == "" {
			if v, err := rssDetail(d.pid); err != nil {
				rssRow = errRow(rssMetric, rssTarget, err)
			} else {
				rssRow.value = v
				rssRow.nums = rssFigs(d.pid)
			}
		}
		if ev.Equal(cpuAt) && cpuRow.value == "" {
			c1, err := cpuTicks(d.pid)
			ns1 := schedNS(d.pid)
			wall := time.Since(t0)
			if err != nil {
				cpuRow = errRow(cpuMetric, cpuTarget, err)
				continue
			}
			cpuSec := float64(c1-c0) / clockTicks
			cpuRow.value = fmt.Sprintf("%.3f %% (%d ticks of 10 ms in %.0f s", 100*cpuSec/wall.Seconds(), c1-c0, wall.Seconds())
			if ns0 >= 0 && ns1 >= 0 {
				cpuRow.value += fmt.Sprintf("; %.2f ms by schedstat", float64(ns1-ns0)/1e6)
			}
			cpuRow.value += ")"
			cpuRow.nums = figs(fig("", float64(c1-c0), "ticks"))
		}
	}
	return []row{rssRow, cpuRow}, d
}

// schedNS is the CPU time of pid's threads in nanoseconds, summed from
// /proc/PID/task/*/schedstat (which counts nanoseconds, where
// utime+stime count 10 ms ticks; a thread that exited is missing), or -1
// where it cannot be read.
func schedNS(pid int) int64 {
	files, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(files) == 0 {
		return -1
	}
	var ns int64
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue // the thread exited
		}
		fields := strings.Fields(string(data))
		if len(fields) == 0 {
			return -1
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return -1
		}
		ns += n
	}
	return ns
}

func sortedEvents(a, b time.Time) []time.Time {
	if b.Before(a) {
		return []time.Time{b, a}
	}
	return []time.Time{a, b}
}
