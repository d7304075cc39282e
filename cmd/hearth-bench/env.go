package main

import (
	"fmt"
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

// machineLine describes where the figures came from; each section's
// caption carries its own load and fsync probe (report_env.go).
func (b *bench) machineLine() string {
	return fmt.Sprintf("%d CPUs, %s/%s, data dirs in %s", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, filepath.Dir(b.root))
}
