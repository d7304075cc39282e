package daemon

import (
	"context"
	"log/slog"
	"time"
)

// startIndexWait bounds how long start-up waits for it: the index is a
// convenience, and an index that stopped (a store error, logged by
// internal/search) must not keep the daemon from serving.
const startIndexWait = 5 * time.Second

// startIndexMax bounds the search backlog that start-up indexes before the
// client listener serves. A first start commits a handful of events (the
// owner's account, the call agent's rooms); a daemon upgraded under a
// large unindexed history catches up in the background as before, rather
// than keeping its clients waiting.
const startIndexMax = 1000

// indexStartup indexes what start-up committed before the daemon says it
// is ready. Left to the index's consumer, it is written after the index's
// flush delay (internal/search flushDelay, 250 ms), which on a new data
// directory put a bbolt commit and two fdatasyncs (about 0.7 ms of CPU)
// into the first idle minute, and turned the idle GC step back on.
func (d *Daemon) indexStartup() {
	pos, _ := d.rooms.Pos()
	done, err := d.search.Indexed()
	if err != nil {
		slog.Warn("search: index position", "err", err)
		return
	}
	if pos <= done || pos-done > startIndexMax {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), startIndexWait)
	defer cancel()
	if err := d.search.WaitFor(ctx, pos); err != nil {
		slog.Warn("search: index start-up's events", "err", err)
	}
}
