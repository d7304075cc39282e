//go:build !linux

package netmon

import "time"

// openWatcher polls: without netlink there is no portable notification
// of address changes or of waking up.
func openWatcher() watcher {
	return watcher{poll: PollInterval, close: func() {}}
}

// sleepClock measures how far the wall clock ran ahead of Go's monotonic
// clock since the monitor was made: the monotonic clock stops while the
// machine sleeps on macOS and Windows (a wall clock set by hand counts
// too: it is rare, and asking the network again costs little).
func sleepClock() func() time.Duration {
	since := time.Now()
	return func() time.Duration {
		now := time.Now()
		return now.Round(0).Sub(since.Round(0)) - now.Sub(since)
	}
}
