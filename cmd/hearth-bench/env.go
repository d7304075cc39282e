package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// loadAvg returns the 1-minute load average from /proc/loadavg: how many
// runnable tasks the machine had on average. Above the core count, other
// work competes with the daemon and the bench, and every figure is noisy.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "n/a"
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return "n/a"
	}
	return f[0]
}

// fsyncProbe times n write+fsync pairs of 4 KiB at one offset of a file
// in dir: the floor under any durable commit on this disk (bbolt commits
// with at least one fsync of the data file).
func fsyncProbe(dir string, n int) (p50, p99 time.Duration, err error) {
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		return 0, 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	ds := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		buf[0] = byte(i)
		t := time.Now()
		if _, err := f.WriteAt(buf, 0); err != nil {
			return 0, 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, 0, err
		}
		ds = append(ds, time.Since(t))
	}
	return pct(ds, 50), pct(ds, 99), nil
}

// pagesProbe times n rounds of a commit-sized write on this disk: 64
// pages of 4 KiB at random offsets of a 64 MiB file, then one fsync. A
// bbolt commit of ten sends to ten rooms writes about that many pages,
// each in its own place, and the store's writer spends most of its time
// waiting for them (docs/performance.md, "Separate rooms: the writer's
// cycle"): this disk's speed for that is what the one-page probe does not
// show. On 7 December (load 2.6): one page 0.15–0.18 ms, 64 scattered
// pages 1.1 ms p50 over 16 MiB, 1.2 over 64 MiB, 1.8 over 256 MiB. The
// file is made once, at path, and kept for the invocation's next probes.
func pagesProbe(path string, n int) (p50 time.Duration, err error) {
	const size, pages = 64 << 20, 64
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || st.Size() != size {
		if _, err := f.WriteAt(make([]byte, size), 0); err != nil {
			return 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, err
		}
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 4096)
	ds := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		t := time.Now()
		for range pages {
			buf[0]++
			if _, err := f.WriteAt(buf, int64(rnd.IntN(size/4096))*4096); err != nil {
				return 0, err
			}
		}
		if err := f.Sync(); err != nil {
			return 0, err
		}
		ds = append(ds, time.Since(t))
	}
	return pct(ds, 50), nil
}

// machineLine describes where the figures came from; each section's
// caption carries its own load and fsync probe (report_env.go).
func (b *bench) machineLine() string {
	return fmt.Sprintf("%d CPUs, %s/%s, data dirs in %s", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, filepath.Dir(b.root))
}
